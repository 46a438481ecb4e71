//! Errors that point into a file: one miette diagnostic per mistake, with the
//! source line, a label at the offending bytes, and a hint.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A named source text, cheap to clone into every diagnostic about it.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: Arc<String>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    fn named(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(&self.name, self.text.clone()).with_language("json")
    }

    /// A diagnostic about `span` of this source.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpannedError {
        SpannedError {
            message: message.into(),
            src: self.named(),
            span: span.into(),
            label: None,
            help: None,
        }
    }
}

/// One mistake at one place in a source.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(osbuild::invalid))]
pub struct SpannedError {
    pub message: String,
    #[source_code]
    pub src: NamedSource<Arc<String>>,
    #[label("{}", label.as_deref().unwrap_or("here"))]
    pub span: SourceSpan,
    pub label: Option<String>,
    #[help]
    pub help: Option<String>,
}

impl SpannedError {
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Every mistake found in one input, reported together before anything runs.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{name} is not a valid manifest ({} {})", errors.len(), if errors.len() == 1 { "error" } else { "errors" })]
#[diagnostic(code(osbuild::invalid_manifest))]
pub struct InvalidInput {
    pub name: String,
    #[related]
    pub errors: Vec<SpannedError>,
}

/// "did you mean": the closest candidate within a small edit distance.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["org.osbuild.hostname", "org.osbuild.mkdir", "org.osbuild.files"];
        assert_eq!(suggest("org.osbuild.hostnme", names), Some("org.osbuild.hostname"));
        assert_eq!(suggest("org.osbuild.mkdri", names), Some("org.osbuild.mkdir"));
        assert_eq!(suggest("something.else", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
