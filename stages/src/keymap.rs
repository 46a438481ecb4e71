//! `org.osbuild.keymap`: sets the console and X11 keyboard layouts (osbuild's schema).

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Sets the keyboard layout of the virtual console in `/etc/vconsole.conf`
/// (replaced, as `systemd-firstboot --keymap` writes it), and optionally the X11
/// keyboard layouts in `/etc/X11/xorg.conf.d/00-keyboard.conf` and, on Debian
/// trees that have it, in `XKBLAYOUT` of `/etc/default/keyboard` (console-setup).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keymap {
    /// The console keymap, such as `us` or `de-latin1` (see `/usr/share/keymaps`
    /// or `/usr/lib/kbd/keymaps`): `KEYMAP=` in `/etc/vconsole.conf`.
    #[schemars(length(min = 1), example = "de-latin1")]
    keymap: String,
    /// The console font: `FONT=` in `/etc/vconsole.conf`.
    font: Option<String>,
    /// The X11 keyboard configuration.
    #[serde(rename = "x11-keymap")]
    x11_keymap: Option<X11Keymap>,
}

/// X11 keyboard settings.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct X11Keymap {
    /// XKB layouts, such as `["us", "de"]`; the first is the default.
    #[schemars(length(min = 1), inner(length(min = 2)))]
    layouts: Vec<String>,
}

fn valid(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '(' | ')'))
}

impl Options for Keymap {
    fn run(self, ctx: &Context) -> StageResult {
        for (what, value) in [("keymap", Some(&self.keymap)), ("font", self.font.as_ref())] {
            if let Some(v) = value.filter(|v| !valid(v)) {
                return Err(format!("{what} {v:?} is not a valid name").into());
            }
        }
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
        if x11.layouts.is_empty() {
            return Err("x11-keymap: layouts must not be empty".into());
        }
        if let Some(bad) = x11.layouts.iter().find(|l| !valid(l)) {
            return Err(format!("x11-keymap: {bad:?} is not a valid layout").into());
        }
        let layouts = x11.layouts.join(",");
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
        STAGE.check(&options).unwrap();
        STAGE.check(&json!({"keymap": "us", "font": "eurlatgr"})).unwrap();
        assert!(STAGE.check(&json!({"keymap": "us", "x11-keymap": {}})).is_err());
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
        let e = STAGE.run(&t.ctx(), &json!({"keymap": "us\nFONT=x"})).unwrap_err();
        assert!(e.0.contains("is not a valid name"));
    }
}
