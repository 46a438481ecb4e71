//! Colours for the line being typed: keywords, strings, numbers, comments,
//! and the REPL's own `:commands`.

use reedline::{Color, Highlighter, StyledText};

use super::lexer::{tokenize, Kind};

pub struct RhaiHighlighter;

impl Highlighter for RhaiHighlighter {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut styled = StyledText::new();
        if line.trim_start().starts_with(':') {
            let end = line
                .char_indices()
                .skip_while(|(_, c)| c.is_whitespace())
                .find(|(_, c)| c.is_whitespace())
                .map_or(line.len(), |(i, _)| i);
            styled.push((Color::Cyan.bold(), line[..end].to_string()));
            if end < line.len() {
                styled.push((Default::default(), line[end..].to_string()));
            }
            return styled;
        }
        for token in tokenize(line) {
            let style = match token.kind {
                Kind::Keyword => Color::Magenta.bold(),
                Kind::Str { .. } => Color::Green.normal(),
                Kind::Number => Color::Yellow.normal(),
                Kind::Comment => Color::DarkGray.italic(),
                Kind::Ident | Kind::Punct | Kind::Space => Default::default(),
            };
            styled.push((style, token.text(line).to_string()));
        }
        styled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_styled_text_is_the_line() {
        for line in [
            "let x = \"a\" + 1; // c",
            ":json p",
            "  :stages org.osbuild.mkdir",
            "",
            "p.stage(\"op",
        ] {
            assert_eq!(RhaiHighlighter.highlight(line, 0).raw_string(), line);
        }
    }
}
