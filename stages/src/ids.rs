//! The one rule for identifiers in options, for every stage and assembler
//! (and the schema's `uuid` format): a UUID is RFC 9562's hyphenated
//! 8-4-4-4-12 form, either case, parsed by the `uuid` crate; a file system
//! may also be named by a FAT volume id, `XXXX-XXXX`.

/// A UUID in the hyphenated form (not the braced, URN or bare-hex forms the
/// `uuid` crate also reads: mkfs and GRUB take only this one).
pub fn parse_uuid(text: &str) -> Result<uuid::Uuid, String> {
    match uuid::Uuid::try_parse(text) {
        Ok(u) if text.len() == 36 => Ok(u),
        _ => Err(format!("{text:?} is not a UUID (8-4-4-4-12 hex digits)")),
    }
}

/// A file system's id: a UUID, or a FAT volume id (two groups of 4 hex digits).
pub fn check_fs_id(text: &str) -> Result<(), String> {
    let fat = text.len() == 9
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| if i == 4 { b == b'-' } else { b.is_ascii_hexdigit() });
    if fat || parse_uuid(text).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a file system UUID (8-4-4-4-12 hex digits, or XXXX-XXXX for FAT)"
        ))
    }
}

/// The JSON Schema pattern of [`check_fs_id`].
pub const FS_ID_PATTERN: &str = "^([0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4})$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_hyphenated_hex() {
        for ok in [
            "0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f",
            "0D4E2E3A-8B3C-4A7E-9F65-2D1B6A3C4E5F",
        ] {
            assert!(parse_uuid(ok).is_ok(), "{ok}");
            assert!(check_fs_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "not-a-uuid",
            "0d4e2e3a8b3c4a7e9f652d1b6a3c4e5f",
            "{0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f}",
            "urn:uuid:0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f",
            "zd4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f",
            "0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad}");
            assert!(check_fs_id(bad).is_err(), "{bad}");
        }
        assert!(check_fs_id("7B77-95E7").is_ok());
        for bad in ["7B77-95E", "7B7795E7", "7B77_95E7", "ZB77-95E7"] {
            assert!(check_fs_id(bad).is_err(), "{bad}");
        }
    }
}
