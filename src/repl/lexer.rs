//! A forgiving tokenizer for Rhai input as it is being typed: it never fails,
//! and an unfinished string or comment is a token too. The highlighter, the
//! completer and the session (to find `import`s) share it.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ident,
    Keyword,
    /// A string or character literal; `closed` is false while it is still open.
    Str {
        closed: bool,
    },
    Number,
    Comment,
    /// Punctuation and operators: `#{` and `::` are one token each.
    Punct,
    Space,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.start..self.end]
    }
}

/// Rhai's keywords (and the literals that read like them).
pub const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "switch", "for", "in", "while", "loop", "do", "until", "return", "throw",
    "try", "catch", "break", "continue", "import", "export", "as", "private", "global", "this", "true", "false",
];

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every token of `text`, covering it without gaps.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let kind = if c.is_whitespace() {
            while chars.peek().is_some_and(|&(_, n)| n.is_whitespace()) {
                chars.next();
            }
            Kind::Space
        } else if c == '/' && next == Some('/') {
            while chars.peek().is_some_and(|&(_, n)| n != '\n') {
                chars.next();
            }
            Kind::Comment
        } else if c == '/' && next == Some('*') {
            chars.next();
            let mut prev = ' ';
            for (_, n) in chars.by_ref() {
                if prev == '*' && n == '/' {
                    break;
                }
                prev = n;
            }
            Kind::Comment
        } else if c == '"' || c == '`' || c == '\'' {
            let mut closed = false;
            while let Some((_, n)) = chars.next() {
                if n == '\\' && c != '`' {
                    chars.next();
                } else if n == c {
                    closed = true;
                    break;
                } else if n == '\n' && c != '`' {
                    // A plain string cannot span lines (without a `\` at the end).
                    break;
                }
            }
            Kind::Str { closed }
        } else if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|&(_, n)| n.is_ascii_alphanumeric() || n == '_' || n == '.')
            {
                chars.next();
            }
            Kind::Number
        } else if is_ident_start(c) {
            while chars.peek().is_some_and(|&(_, n)| is_ident_char(n)) {
                chars.next();
            }
            let end = chars.peek().map_or(text.len(), |&(i, _)| i);
            if KEYWORDS.contains(&&text[start..end]) {
                Kind::Keyword
            } else {
                Kind::Ident
            }
        } else {
            if (c == '#' && next == Some('{')) || (c == ':' && next == Some(':')) {
                chars.next();
            }
            Kind::Punct
        };
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        tokens.push(Token { kind, start, end });
    }
    tokens
}

/// The `import "path" as alias;` statements at the top level of `text`.
pub fn top_level_imports(text: &str) -> Vec<(String, String)> {
    let tokens: Vec<Token> = tokenize(text)
        .into_iter()
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
        .collect();
    let mut depth = 0i32;
    let mut imports = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.text(text) {
            "{" | "#{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => depth -= 1,
            "import" if depth == 0 && t.kind == Kind::Keyword => {
                if let [path, as_, alias, ..] = &tokens[i + 1..] {
                    if path.kind == (Kind::Str { closed: true }) && as_.text(text) == "as" && alias.kind == Kind::Ident
                    {
                        let quoted = path.text(text);
                        imports.push((quoted[1..quoted.len() - 1].to_string(), alias.text(text).to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    imports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        tokenize(text)
            .into_iter()
            .filter(|t| t.kind != Kind::Space)
            .map(|t| (t.kind, t.text(text)))
            .collect()
    }

    #[test]
    fn tokens_cover_the_text() {
        let text = "let p = pipeline(\"web\"); // hi\np.stage(\"x\", #{ a: 1_000, b: `t` }); ns::f\"open";
        let tokens = tokenize(text);
        let mut at = 0;
        for t in &tokens {
            assert_eq!(t.start, at);
            at = t.end;
        }
        assert_eq!(at, text.len());
        let k = kinds(text);
        assert_eq!(k[0], (Kind::Keyword, "let"));
        assert!(k.contains(&(Kind::Str { closed: true }, "\"web\"")));
        assert!(k.contains(&(Kind::Comment, "// hi")));
        assert!(k.contains(&(Kind::Punct, "#{")));
        assert!(k.contains(&(Kind::Number, "1_000")));
        assert!(k.contains(&(Kind::Punct, "::")));
        assert_eq!(k.last(), Some(&(Kind::Str { closed: false }, "\"open")));
    }

    #[test]
    fn imports_at_the_top_level() {
        let text = "import \"debian\" as debian; fn f() { import \"x\" as y; } import \"./lib\" as lib;";
        assert_eq!(
            top_level_imports(text),
            vec![
                ("debian".to_string(), "debian".to_string()),
                ("./lib".to_string(), "lib".to_string())
            ]
        );
    }
}
