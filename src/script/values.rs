//! Option values the stdlib checks before any stage sees them: disk sizes and
//! file modes. Each check says what is wrong with the value, and how to write
//! it, so the diagnostic at the user's line can say so.

use rhai::Dynamic;

/// What is wrong with a value: the message, the label at the value, a help line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub label: &'static str,
    pub help: String,
}

fn problem(message: String, label: &'static str, help: impl Into<String>) -> Problem {
    Problem {
        message,
        label,
        help: help.into(),
    }
}

/// The smallest disk: room for a partition table and a little file system.
pub const MIN_DISK: i64 = 1 << 20;
const SECTOR: i64 = 512;

/// What a value is, in the script's words: "an integer", "a string", "a map", ...
pub fn type_name(value: &Dynamic) -> &'static str {
    if value.is_int() {
        "an integer"
    } else if value.is_float() {
        "a float"
    } else if value.is_string() {
        "a string"
    } else if value.is_char() {
        "a character"
    } else if value.is_bool() {
        "a boolean"
    } else if value.is_array() {
        "an array"
    } else if value.is_map() {
        "a map"
    } else if value.is_unit() {
        "()"
    } else if value.is::<super::api::ScriptPipeline>() {
        "a pipeline"
    } else {
        "a value of another kind"
    }
}

/// A disk size in bytes. A size is an integer, in bytes, or a string of a
/// whole number and a unit: K, M, G or T (powers of 1024; `k`, `KiB` and `KB`
/// mean the same), e.g. "512M", "4G", "4GiB"; a string without a unit is
/// bytes. A disk is at least 1 MiB and a whole number of 512-byte sectors.
pub fn disk_size(value: &Dynamic) -> Result<i64, Problem> {
    const HOW: &str = "a size is bytes, or a string such as \"512M\", \"4G\" or \"4GiB\"";
    if let Ok(n) = value.as_int() {
        return whole_disk(n, None);
    }
    let Some(text) = value.clone().into_string().ok() else {
        let what = type_name(value);
        let help = match value.as_float() {
            Ok(f) if f > 0.0 && f.fract() == 0.0 && f <= 64.0 => format!("did you mean \"{f}G\"?"),
            _ => HOW.to_string(),
        };
        return Err(problem(
            format!("a size is an integer or a string such as \"4G\", not {what}"),
            "not a size",
            help,
        ));
    };
    let s = text.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (s[..i].trim_end(), s[i..].trim_start()),
        None => (s, ""),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') || number.matches('.').count() > 1 {
        return Err(problem(
            format!("{text:?} is not a size: a size is a whole number and a unit"),
            "not a size",
            HOW,
        ));
    }
    let factor: i64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" | "KB" | "kB" => 1 << 10,
        "M" | "MiB" | "MB" => 1 << 20,
        "G" | "GiB" | "GB" => 1 << 30,
        "T" | "TiB" | "TB" => 1 << 40,
        _ => {
            return Err(problem(
                format!("{text:?} is not a size: the unit {unit:?} is none of K, M, G and T"),
                "not a size",
                "the units are K, M, G and T (powers of 1024), as in \"512M\", \"4G\" or \"4GiB\"",
            ))
        }
    };
    if number.contains('.') {
        // "1.5G": say it in the next unit down, when that is whole.
        let down = [(1i64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
            .into_iter()
            .find(|(d, _)| *d < factor);
        let exact = down.and_then(|(d, name)| {
            let n = number.parse::<f64>().ok()? * (factor / d) as f64;
            (n.fract() == 0.0 && n < 1e15).then(|| format!("did you mean \"{n}{name}\"?"))
        });
        return Err(problem(
            format!("{text:?} is not a size: a size is a whole number of its unit"),
            "not a whole number",
            exact.unwrap_or_else(|| "write it in a smaller unit, e.g. \"1536M\" for 1.5G".into()),
        ));
    }
    let n = number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            problem(
                format!("{text:?} is too large a size"),
                "too large",
                "a disk is at most 8 EiB",
            )
        })?;
    whole_disk(n, Some(&text))
}

/// A size in bytes that a disk can have; `written` is the string it was
/// written as, if it was one (a bare integer was bytes, perhaps not meant so).
fn whole_disk(n: i64, written: Option<&str>) -> Result<i64, Problem> {
    if n < MIN_DISK {
        let help = match written {
            None if (1..=64).contains(&n) => format!("did you mean \"{n}G\"?"),
            None if n > 0 => format!("sizes are bytes: \"{n}M\" or \"{n}G\" say MiB or GiB"),
            _ => "a disk is at least \"1M\"; sizes such as \"512M\" or \"4G\" are the usual".into(),
        };
        let what = match written {
            Some(text) => format!("a disk of {text:?} ({n} bytes)"),
            None => format!("a disk of {n} bytes"),
        };
        return Err(problem(
            format!("{what} is too small: a disk is at least 1 MiB"),
            "too small",
            help,
        ));
    }
    if n % SECTOR != 0 {
        return Err(problem(
            format!("a disk of {n} bytes is not a whole number of 512-byte sectors"),
            "not whole sectors",
            format!(
                "round it to a multiple of 512, such as {}, or write it with a unit, such as \"4G\"",
                n / SECTOR * SECTOR
            ),
        ));
    }
    Ok(n)
}

/// A file mode as the files stage takes it: an integer up to 0o7777, best
/// written in octal (`0o600`), or a string of octal digits ("0600", "600").
/// The value is returned as given.
pub fn file_mode(value: &Dynamic) -> Result<Dynamic, Problem> {
    const HOW: &str = "a mode is an integer, written in octal as 0o644, or an octal string such as \"0644\"";
    if let Ok(n) = value.as_int() {
        if (0..=0o7777).contains(&n) {
            return Ok(value.clone());
        }
        let shown = if n < 0 { n.to_string() } else { format!("{n} (0o{n:o})") };
        return Err(problem(
            format!("mode {shown} is not a file mode: modes go from 0 up to 0o7777"),
            "not a file mode",
            HOW,
        ));
    }
    if let Ok(s) = value.clone().into_string() {
        let digits = s.strip_prefix("0o").unwrap_or(&s);
        let ok = !digits.is_empty()
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
            && u32::from_str_radix(digits, 8).is_ok_and(|m| m <= 0o7777);
        if ok {
            return Ok(value.clone());
        }
        let help = symbolic(&s)
            .map(|m| format!("{s:?} is 0o{m:o}: write 0o{m:o} or \"0{m:o}\""))
            .unwrap_or_else(|| HOW.into());
        return Err(problem(
            format!("mode {s:?} is not an octal file mode"),
            "not a file mode",
            help,
        ));
    }
    Err(problem(
        format!("a mode is an integer or an octal string, not {}", type_name(value)),
        "not a file mode",
        HOW,
    ))
}

/// The mode of `ls -l`'s "rw-r--r--" (nine characters, or ten with the type).
fn symbolic(s: &str) -> Option<u32> {
    let s = s.strip_prefix('-').filter(|s| s.len() == 9).unwrap_or(s);
    if s.len() != 9 {
        return None;
    }
    let mut mode = 0;
    for (i, c) in s.chars().enumerate() {
        let bit = 1 << (8 - i);
        match (i % 3, c) {
            (_, '-') => {}
            (0, 'r') | (1, 'w') | (2, 'x') => mode |= bit,
            _ => return None,
        }
    }
    Some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(v: impl Into<Dynamic>) -> Result<i64, Problem> {
        disk_size(&v.into())
    }

    fn size_err(v: impl Into<Dynamic>) -> Problem {
        size(v).expect_err("a size problem")
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(size("4G"), Ok(4 << 30));
        assert_eq!(size("4GiB"), Ok(4 << 30));
        assert_eq!(size(" 4 GB "), Ok(4 << 30));
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("1024K"), Ok(1 << 20));
        assert_eq!(size("1T"), Ok(1 << 40));
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size(1i64 << 30), Ok(1 << 30));
    }

    #[test]
    fn a_small_integer_probably_meant_gib() {
        let e = size_err(8i64);
        assert_eq!(e.message, "a disk of 8 bytes is too small: a disk is at least 1 MiB");
        assert_eq!(e.help, "did you mean \"8G\"?");
        assert_eq!(
            size_err(512i64).help,
            "sizes are bytes: \"512M\" or \"512G\" say MiB or GiB"
        );
        // A string says its unit: no guessing.
        let e = size_err("8K");
        assert_eq!(
            e.message,
            "a disk of \"8K\" (8192 bytes) is too small: a disk is at least 1 MiB"
        );
        assert!(!e.help.contains("did you mean"), "{e:?}");
        assert_eq!(size_err(0i64).label, "too small");
        assert_eq!(size_err(-4i64).label, "too small");
    }

    #[test]
    fn sizes_are_whole_sectors() {
        let e = size_err((1i64 << 20) + 1);
        assert_eq!(e.label, "not whole sectors");
        assert!(e.help.contains("1048576"), "{e:?}");
    }

    #[test]
    fn sizes_that_are_not() {
        assert_eq!(
            size_err("4X").message,
            "\"4X\" is not a size: the unit \"X\" is none of K, M, G and T"
        );
        assert_eq!(size_err("abc").label, "not a size");
        assert_eq!(size_err("").label, "not a size");
        assert_eq!(size_err("G").label, "not a size");
        assert_eq!(size_err("4..2G").label, "not a size");
        assert_eq!(size_err("-4G").label, "not a size");
        let e = size_err("1.5G");
        assert_eq!(e.help, "did you mean \"1536M\"?");
        assert_eq!(size_err("99999999999T").label, "too large");
        assert_eq!(size_err("99999999999999999999").label, "too large");
        let e = size_err(8.0);
        assert_eq!(
            e.message,
            "a size is an integer or a string such as \"4G\", not a float"
        );
        assert_eq!(e.help, "did you mean \"8G\"?");
        assert_eq!(
            size_err(Dynamic::UNIT).message,
            "a size is an integer or a string such as \"4G\", not ()"
        );
    }

    #[test]
    fn modes() {
        for ok in [
            Dynamic::from(0o600i64),
            0i64.into(),
            0o7777i64.into(),
            "0644".into(),
            "600".into(),
            "0o600".into(),
        ] {
            assert!(file_mode(&ok).is_ok(), "{ok}");
        }
        let e = file_mode(&0o10000i64.into()).unwrap_err();
        assert_eq!(
            e.message,
            "mode 4096 (0o10000) is not a file mode: modes go from 0 up to 0o7777"
        );
        assert_eq!(
            file_mode(&(-1i64).into()).unwrap_err().message,
            "mode -1 is not a file mode: modes go from 0 up to 0o7777"
        );
        let e = file_mode(&"rw-r--r--".into()).unwrap_err();
        assert_eq!(e.message, "mode \"rw-r--r--\" is not an octal file mode");
        assert_eq!(e.help, "\"rw-r--r--\" is 0o644: write 0o644 or \"0644\"");
        assert_eq!(
            file_mode(&"-rwxr-x---".into()).unwrap_err().help,
            "\"-rwxr-x---\" is 0o750: write 0o750 or \"0750\""
        );
        for bad in ["", "0o", "0x1ff", "+644", "10000", "0800", "64 4"] {
            assert!(file_mode(&bad.into()).is_err(), "{bad:?}");
        }
        assert_eq!(
            file_mode(&true.into()).unwrap_err().message,
            "a mode is an integer or an octal string, not a boolean"
        );
    }
}
