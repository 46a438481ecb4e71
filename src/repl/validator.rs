//! Multi-line input: Enter on an unfinished expression (an open brace,
//! bracket, parenthesis or string) starts a new line instead of evaluating.
//! Rhai reports such input as an error at its very end; any other error is
//! the user's to see, so the input is complete.

use reedline::{ValidationResult, Validator};
use rhai::{Engine, Position};

pub struct RhaiValidator {
    engine: Engine,
}

impl Default for RhaiValidator {
    fn default() -> Self {
        let mut engine = Engine::new_raw();
        // Only syntax matters here, and deep nesting is the evaluator's to refuse.
        engine.set_max_expr_depths(0, 0);
        RhaiValidator { engine }
    }
}

/// The position just past the last character of `text`.
fn end_of(text: &str) -> (usize, usize) {
    let line = text.matches('\n').count() + 1;
    let last = text.rsplit('\n').next().unwrap_or("");
    (line, last.chars().count() + 1)
}

impl RhaiValidator {
    /// Whether `text` needs more lines.
    pub fn incomplete(&self, text: &str) -> bool {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with(':') {
            return false;
        }
        let Err(err) = self.engine.compile(text) else {
            return false;
        };
        // Rhai places an unterminated string at its start: a backtick string
        // may span lines, and so may a "string" whose line ends with `\`.
        let open_backtick = super::lexer::tokenize(text)
            .iter()
            .rfind(|t| !matches!(t.kind, super::lexer::Kind::Space | super::lexer::Kind::Comment))
            .is_some_and(|t| {
                t.kind == (super::lexer::Kind::Str { closed: false })
                    && (text[t.start..].starts_with('`') || text.ends_with('\\'))
            });
        open_backtick || at_end(text, err.1)
    }
}

/// Whether `pos` is at (or past) the end of `text`, ignoring trailing blanks.
fn at_end(text: &str, pos: Position) -> bool {
    let Some(line) = pos.line() else {
        return true;
    };
    let (last_line, last_col) = end_of(text.trim_end());
    let col = pos.position().unwrap_or(0);
    line > last_line || (line == last_line && col >= last_col)
}

impl Validator for RhaiValidator {
    fn validate(&self, line: &str) -> ValidationResult {
        if self.incomplete(line) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Complete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_things_continue() {
        let v = RhaiValidator::default();
        for text in [
            "let p = pipeline(\"web\"",
            "p.stage(\"org.osbuild.mkdir\", #{",
            "p.stage(\"org.osbuild.mkdir\", #{\n  paths: [",
            "fn f(x) {",
            "let a = [1, 2,",
            "let s = `two\nlines",
            "let s = \"one \\",
            "if x {\n  1\n} else {",
        ] {
            assert!(v.incomplete(text), "{text:?} should continue");
        }
    }

    #[test]
    fn finished_or_wrong_input_is_complete() {
        let v = RhaiValidator::default();
        for text in [
            "",
            "   ",
            ":help",
            ":json p",
            "let p = pipeline(\"web\");",
            "p.stage(\"org.osbuild.mkdir\", #{ paths: [] })",
            "let x = 1 +* 2;",
            "let x = );",
            "let s = \"a\nb\";",
            "fn f(x) {\n  x\n}",
            "nope nope",
        ] {
            assert!(!v.incomplete(text), "{text:?} should be complete");
        }
    }
}
