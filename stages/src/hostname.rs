//! `org.osbuild.hostname`: writes `/etc/hostname`.

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Sets the static host name of the image.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hostname {
    /// The host name, written to `/etc/hostname`.
    #[schemars(length(min = 1, max = 64))]
    hostname: String,
}

impl Options for Hostname {
    fn run(self, ctx: &Context) -> StageResult {
        valid(&self.hostname)?;
        let tree = ctx.open_tree()?;
        tree.create_dir_all("etc")?;
        tree.write("etc/hostname", format!("{}\n", self.hostname))?;
        println!("hostname set to {}", self.hostname);
        Ok(())
    }
}

/// RFC 1123 labels: letters, digits and inner hyphens, dot-separated.
fn valid(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid host name"))
    }
}

pub static STAGE: Builtin = Builtin::new::<Hostname>(
    "org.osbuild.hostname",
    Kind::Stage,
    "Sets the host name in /etc/hostname",
);

#[cfg(test)]
mod tests {
    #[test]
    fn host_names() {
        assert!(super::valid("web-1.example").is_ok());
        assert!(super::valid("-bad").is_err());
        assert!(super::valid("has space").is_err());
        assert!(super::valid("").is_err());
    }
}
