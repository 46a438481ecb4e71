//! `org.osbuild.keymap`: sets the console and X11 keyboard layouts (osbuild's schema).

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageResult};

/// Sets the keyboard layout of the virtual console in `/etc/vconsole.conf`
/// (replaced, as `systemd-firstboot --keymap` writes it), and optionally the X11
/// keyboard layouts in `/etc/X11/xorg.conf.d/00-keyboard.conf` and, on Debian
/// trees that have it, in `XKBLAYOUT` of `/etc/default/keyboard` (console-setup).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keymap {
    /// The console keymap, such as `us` or `de-latin1` (see `/usr/share/keymaps`
    /// or `/usr/lib/kbd/keymaps`): `KEYMAP=` in `/etc/vconsole.conf`.
    #[schemars(example = "de-latin1")]
    keymap: KeyboardName,
    /// The console font: `FONT=` in `/etc/vconsole.conf`.
    font: Option<KeyboardName>,
    /// The X11 keyboard configuration.
    #[serde(rename = "x11-keymap")]
    x11_keymap: Option<X11Keymap>,
}

/// X11 keyboard settings.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct X11Keymap {
    /// XKB layouts, such as `["us", "de"]`; the first is the default.
    #[schemars(length(min = 1))]
    layouts: Vec<KeyboardName>,
}

/// A keymap, font or layout name: letters, digits, `_`, `-`, `.`, `+`, `(`
/// and `)` (XKB's `de(nodeadkeys)`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyboardName(String);

impl KeyboardName {
    fn parse(value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '(' | ')'));
        if ok {
            Ok(KeyboardName(value.to_string()))
        } else {
            Err(format!("{value:?} is not a valid name"))
        }
    }
}

crate::string_newtype!(
    KeyboardName,
    {
        "type": "string",
        "pattern": "^[A-Za-z0-9_.+()-]+$",
    }
);

impl Options for Keymap {
    fn validate(&self) -> Vec<OptionsError> {
        match &self.x11_keymap {
            Some(x11) if x11.layouts.is_empty() => vec![OptionsError::invalid(
                crate::at!["x11-keymap", "layouts"],
                "layouts must not be empty",
            )],
            _ => Vec::new(),
        }
    }

    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        tree.create_dir_all("etc")?;
        let mut text = format!("KEYMAP={}\n", self.keymap);
        if let Some(font) = &self.font {
            text.push_str(&format!("FONT={font}\n"));
        }
        tree.write("etc/vconsole.conf", text)?;
        println!("console keymap set to {}", self.keymap);

        let Some(x11) = self.x11_keymap else {
            return Ok(());
        };
        let layouts: Vec<&str> = x11.layouts.iter().map(KeyboardName::as_str).collect();
        let layouts = layouts.join(",");
        tree.create_dir_all("etc/X11/xorg.conf.d")?;
        tree.write(
            "etc/X11/xorg.conf.d/00-keyboard.conf",
            format!(
                "# Written by osbuild; use localectl(1) to change it.\n\
                 Section \"InputClass\"\n\
                 \x20       Identifier \"system-keyboard\"\n\
                 \x20       MatchIsKeyboard \"on\"\n\
                 \x20       Option \"XkbLayout\" \"{layouts}\"\n\
                 EndSection\n"
            ),
        )?;
        println!("X11 keyboard layouts set to {layouts}");

        let keyboard = "etc/default/keyboard";
        if tree.is_file(keyboard) {
            let old = tree.read_to_string(keyboard)?;
            let line = format!("XKBLAYOUT=\"{layouts}\"");
            let mut found = false;
            let mut new: Vec<String> = old
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("XKBLAYOUT=") {
                        found = true;
                        line.clone()
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            if !found {
                new.push(line);
            }
            tree.rewrite(keyboard, new.join("\n") + "\n")?;
            println!("XKBLAYOUT set in /etc/default/keyboard");
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Keymap>(
    "org.osbuild.keymap",
    Kind::Stage,
    "Sets the console keymap (/etc/vconsole.conf) and X11 keyboard layouts",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    const DEBIAN_KEYBOARD: &str = "\
# KEYBOARD CONFIGURATION FILE

# Consult the keyboard(5) manual page.

XKBMODEL=\"pc105\"
XKBLAYOUT=\"us\"
XKBVARIANT=\"\"
XKBOPTIONS=\"\"

BACKSPACE=\"guess\"
";

    #[test]
    fn console_and_x11() {
        let t = TempTree::new("keymap");
        t.write("etc/vconsole.conf", "KEYMAP=us\nFONT=eurlatgr\n");
        t.write("etc/default/keyboard", DEBIAN_KEYBOARD);
        // As osbuild's test manifests and osbuild-composer write it.
        let options = json!({"keymap": "de-latin1", "x11-keymap": {"layouts": ["de", "us"]}});
        assert!(STAGE.check(&options).is_empty());
        assert!(STAGE.check(&json!({"keymap": "us", "font": "eurlatgr"})).is_empty());
        assert!(!STAGE.check(&json!({"keymap": "us", "x11-keymap": {}})).is_empty());
        let e = STAGE.check(&json!({"keymap": "us", "x11-keymap": {"layouts": []}}));
        assert_eq!(e[0].path, crate::at!["x11-keymap", "layouts"]);
        let e = STAGE.check(&json!({"keymap": "us", "x11-keymap": {"layouts": ["de", "u s"]}}));
        assert_eq!(e[0].path, crate::at!["x11-keymap", "layouts", 1]);
        let e = STAGE.check(&json!({"keymap": "us\nFONT=x"}));
        assert!(e[0].message.contains("is not a valid name"));
        STAGE.run(&t.ctx(), &options).unwrap();
        assert_eq!(t.read("etc/vconsole.conf"), "KEYMAP=de-latin1\n");
        assert_eq!(
            t.read("etc/X11/xorg.conf.d/00-keyboard.conf"),
            "# Written by osbuild; use localectl(1) to change it.\n\
             Section \"InputClass\"\n        Identifier \"system-keyboard\"\n        MatchIsKeyboard \"on\"\n        \
             Option \"XkbLayout\" \"de,us\"\nEndSection\n"
        );
        assert_eq!(
            t.read("etc/default/keyboard"),
            DEBIAN_KEYBOARD.replace("XKBLAYOUT=\"us\"", "XKBLAYOUT=\"de,us\"")
        );

        STAGE
            .run(&t.ctx(), &json!({"keymap": "us", "font": "eurlatgr"}))
            .unwrap();
        assert_eq!(t.read("etc/vconsole.conf"), "KEYMAP=us\nFONT=eurlatgr\n");
    }
}
