//! Errors that point into a file: one miette diagnostic per mistake, with the
//! source line, a label at the offending bytes, and a hint.
//!
//! Why [`Excerpt`]: miette prints the lines around a label in full and
//! indents the label with a format width, which Rust caps at 65,535 columns,
//! so a label late in a very long line (a minified manifest, a generated
//! script) panicked, and a shorter long line was unreadable anyway. Every
//! diagnostic reads its source through an `Excerpt`: the whole text when the
//! lines around the span are of a sane length (`LONG_LINE`), else a window of
//! those lines in which each longer one is cut to `KEEP` bytes either side of
//! the span's ends, with "…" at each cut. The span is remapped into the
//! window; the line and column miette reports are still those in the whole
//! text. A span longer than `LONG_LINE` is labelled at its start only.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

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

    /// A diagnostic about `span` of this source.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpannedError {
        let (src, span) = Excerpt::new(&self.name, "json", self.text.clone(), span);
        SpannedError {
            message: message.into(),
            src,
            span,
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
    pub src: Excerpt,
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

/// A line longer than this many bytes is cut. Up to it, lines print as they
/// always did, which covers any hand-written line; and as a tab is at most 4
/// columns in miette (its default tab width) and a wide character 2, such a
/// line is at most 16,384 columns, well below the 65,535 at which miette panics.
const LONG_LINE: usize = 4096;
/// Bytes kept either side of a span's start and end on a cut line: about what
/// a terminal shows. A cut line is at most 4 × `KEEP` bytes and two markers.
const KEEP: usize = 60;
/// Lines of context kept either side of the span (miette shows one by default).
const CONTEXT_LINES: usize = 3;
const CUT: &str = "…";

/// The source a diagnostic shows: the whole text, or a window of it with
/// long lines cut (see the module comment).
#[derive(Debug, Clone)]
pub struct Excerpt {
    name: String,
    language: &'static str,
    /// What miette reads: the whole text, or the window.
    text: Arc<String>,
    window: Option<Window>,
}

#[derive(Debug, Clone)]
struct Window {
    whole: Arc<String>,
    /// The line of the whole text the window starts at (0-based).
    first_line: usize,
    /// (offset in the window, offset in the whole text, length) of each run
    /// of bytes copied as is, in order; the cut markers lie between them.
    pieces: Vec<(usize, usize, usize)>,
}

impl Window {
    /// The offset in the whole text of window offset `w` (a marker maps to its cut).
    fn whole_offset(&self, w: usize) -> usize {
        let i = self.pieces.partition_point(|p| p.0 <= w).saturating_sub(1);
        self.pieces
            .get(i)
            .map_or(0, |&(pw, po, len)| po + (w.saturating_sub(pw)).min(len))
    }
}

impl Excerpt {
    /// The excerpt of `text` to show `span` with, and the span in it.
    pub fn new(name: &str, language: &'static str, text: Arc<String>, span: Range<usize>) -> (Excerpt, SourceSpan) {
        let t = text.as_str();
        let start = floor_char(t, span.start);
        let mut end = ceil_char(t, span.end.max(start));
        if end - start > LONG_LINE {
            end = ceil_char(t, (start + KEEP).min(line_end(t, start)));
        }
        let mut from = line_start(t, start);
        for _ in 0..CONTEXT_LINES {
            from = prev_line(t, from);
        }
        let mut to = line_end(t, end);
        for _ in 0..CONTEXT_LINES {
            to = line_end(t, next_line(t, to));
        }
        let excerpt = |text, window| Excerpt {
            name: name.to_string(),
            language,
            text,
            window,
        };
        if t[from..to].split(['\n', '\r']).all(|l| l.len() <= LONG_LINE) {
            return (excerpt(text.clone(), None), (start..end).into());
        }

        let mut out = String::new();
        let mut pieces = Vec::new();
        let mut copy = |out: &mut String, r: Range<usize>| {
            pieces.push((out.len(), r.start, r.len()));
            out.push_str(&t[r]);
        };
        let mut pos = from;
        loop {
            let le = line_end(t, pos);
            let mut keep: Vec<Range<usize>> = Vec::new();
            if le - pos <= LONG_LINE {
                keep.push(pos..le);
            } else {
                for p in [start, end].into_iter().filter(|p| (pos..=le).contains(p)) {
                    let r = floor_char(t, p.saturating_sub(KEEP).max(pos))..ceil_char(t, (p + KEEP).min(le));
                    match keep.last_mut() {
                        Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                        _ => keep.push(r),
                    }
                }
                if keep.is_empty() {
                    keep.push(pos..ceil_char(t, (pos + KEEP).min(le)));
                }
            }
            let mut at = pos;
            for r in keep {
                if r.start > at {
                    out.push_str(CUT);
                }
                at = r.end;
                copy(&mut out, r);
            }
            if at < le {
                out.push_str(CUT);
            }
            if le >= to {
                break;
            }
            pos = next_line(t, le);
            copy(&mut out, le..pos);
        }
        let window = Window {
            whole: text.clone(),
            first_line: line_breaks(&t[..from]),
            pieces,
        };
        let to_window = |o: usize| {
            let i = window.pieces.partition_point(|p| p.1 <= o).saturating_sub(1);
            let (pw, po, len) = window.pieces[i];
            pw + (o - po).min(len)
        };
        let span = to_window(start)..to_window(end);
        (excerpt(Arc::new(out), Some(window)), span.into())
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .as_str()
            .read_span(span, context_lines_before, context_lines_after)?;
        let (mut line, mut column) = (inner.line(), inner.column());
        if let Some(w) = &self.window {
            line += w.first_line;
            if context_lines_before == 0 {
                // The column of the span's start, in bytes as miette counts.
                let o = w.whole_offset(span.offset());
                column = o - line_start(&w.whole, o);
            }
        }
        let contents = MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            line,
            column,
            inner.line_count(),
        )
        .with_language(self.language);
        Ok(Box::new(contents))
    }
}

/// Line breaks as miette counts them: `\n`, `\r\n` and a lone `\r`.
fn line_start(t: &str, pos: usize) -> usize {
    t[..pos].rfind(['\n', '\r']).map_or(0, |i| i + 1)
}

fn line_end(t: &str, pos: usize) -> usize {
    t[pos..].find(['\n', '\r']).map_or(t.len(), |i| pos + i)
}

/// The start of the line after the one ending at `end` (or `end` at the end of the text).
fn next_line(t: &str, end: usize) -> usize {
    let rest = &t.as_bytes()[end..];
    end + match rest {
        [b'\r', b'\n', ..] => 2,
        [] => 0,
        _ => 1,
    }
}

/// The start of the line before the one starting at `start` (or 0).
fn prev_line(t: &str, start: usize) -> usize {
    let before = &t[..start];
    let end = before
        .strip_suffix("\r\n")
        .or_else(|| before.strip_suffix(['\n', '\r']));
    end.map_or(0, |end| line_start(t, end.len()))
}

fn line_breaks(t: &str) -> usize {
    t.matches('\n').count() + t.matches('\r').count() - t.matches("\r\n").count()
}

fn floor_char(t: &str, mut i: usize) -> usize {
    i = i.min(t.len());
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(t: &str, mut i: usize) -> usize {
    i = i.min(t.len());
    while !t.is_char_boundary(i) {
        i += 1;
    }
    i
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

    fn render(d: &dyn Diagnostic) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .render_report(&mut out, d)
            .unwrap();
        out
    }

    /// "m.json:L:C" from a rendered report.
    fn place(report: &str) -> &str {
        let at = report.find("╭─[").unwrap() + "╭─[".len();
        &report[at..at + report[at..].find(']').unwrap()]
    }

    /// Renders a diagnostic at `span` and checks that no line is overlong.
    fn rendered(text: &str, span: Range<usize>) -> String {
        let out = render(&Source::new("m.json", text).error(span, "wrong").label("this"));
        let widest = out.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest < 2 * KEEP + 100, "a line of {widest} columns:\n{out}");
        out
    }

    #[test]
    fn short_lines_render_as_the_whole_text() {
        let text = "{\n  \"stages\": [],\n  \"bogus\": 1\n}\n";
        let e = Source::new("m.json", text).error(22..29, "unknown key");
        assert!(e.src.window.is_none());
        assert_eq!(e.span, (22..29).into());
        assert!(render(&e).contains(" 3 │   \"bogus\": 1\n"));
    }

    #[test]
    fn a_span_late_in_a_long_line_is_shown_in_a_window() {
        let x = "x".repeat(70_000);
        let text = format!("{{\"stages\":[{{\"options\":{{\"hostname\": \"{x}\", \"bogus\": 1}}}}]}}\n");
        let at = text.find("\"bogus\"").unwrap();
        let out = rendered(&text, at..at + 7);
        assert_eq!(place(&out), format!("m.json:1:{}", at + 1));
        assert!(out.contains(" 1 │ …xxx"), "{out}");
        assert!(out.contains("x\", \"bogus\": 1}}]}\n"), "{out}");
        // The label is under `"bogus"`.
        let line = out.lines().find(|l| l.contains("\"bogus\"")).unwrap();
        let under = out.lines().find(|l| l.contains("┬")).unwrap();
        let col = |l: &str, s: &str| l[..l.find(s).unwrap()].chars().count();
        assert_eq!(col(under, "─"), col(line, "\"bogus\""), "{out}");
    }

    #[test]
    fn long_lines_around_the_span_are_cut_and_line_numbers_kept() {
        let long = "y".repeat(10_000);
        let text = format!("a\n{long}\n{long}\"bad\"{long}\n{long}\nb\n");
        let at = text.find("\"bad\"").unwrap();
        let out = rendered(&text, at..at + 5);
        assert_eq!(place(&out), format!("m.json:3:{}", 10_001));
        for n in [" 2 │ yyy", " 3 │ …yyy", " 4 │ yyy"] {
            assert!(out.contains(n), "{n:?} in\n{out}");
        }
        assert!(out.contains("y\"bad\"y"), "{out}");
    }

    #[test]
    fn odd_spans_never_panic() {
        let text = format!("{{\n\"é\": \"{}\"\r\n{}\n", "é日".repeat(30_000), "z".repeat(5000));
        let n = text.len();
        let cases = [
            n..n,               // at the very end
            n - 1..n,           // the last byte
            n + 10..n + 20,     // past the end
            n - 3..n + 100,     // running past the end
            50_001..50_001,     // zero-length, inside a character
            50_001..50_002,     // inside a character both ends
            7..n - 5005,        // a huge span: labelled at its start
            0..n,               // everything
            n - 5001..n - 5001, // at the CRLF
        ];
        for span in cases {
            // (miette shows no label after a trailing newline: there is no line to put it on.)
            let out = rendered(&text, span.clone());
            assert!(out.contains("this") || span.start >= n, "{span:?}:\n{out}");
        }
    }

    #[test]
    fn a_huge_span_is_labelled_at_its_start() {
        let text = format!("{{\"hostname\": \"{}\"}}\n", "x".repeat(100_000));
        let out = rendered(&text, 13..text.len() - 2);
        assert_eq!(place(&out), "m.json:1:14");
        assert!(out.contains(" 1 │ {\"hostname\": \"xxx"), "{out}");
        assert!(out.contains("xxx…\n"), "{out}");
    }

    /// Wherever the span is, the line and column are what miette says for the
    /// whole text (where it does not panic on it).
    #[test]
    fn windows_report_the_place_in_the_whole_text() {
        let text = format!(
            "ab\n{}\r\n\r\n{}\n\nc\rd\n{}",
            "é".repeat(4000),
            "x".repeat(5000),
            "q".repeat(5000)
        );
        let mut at = 0;
        while at <= text.len() {
            for len in [0, 1, 30, 5000] {
                let span = at..(at + len).min(text.len());
                let e = Source::new("m.json", text.as_str()).error(span.clone(), "wrong");
                let whole = SpannedError {
                    message: "wrong".into(),
                    src: Excerpt {
                        name: "m.json".into(),
                        language: "json",
                        text: Arc::new(text.clone()),
                        window: None,
                    },
                    span: span.clone().into(),
                    label: None,
                    help: None,
                };
                assert_eq!(place(&render(&e)), place(&render(&whole)), "{span:?}");
            }
            at = ceil_char(&text, at + 499);
            if at == text.len() {
                at += 1;
            }
        }
    }
}
