//! `org.osbuild.users`: adds or modifies user accounts (osbuild's schema).
//!
//! The account files are edited in Rust rather than with `useradd --root`; see
//! [`crate::accounts`] for why (in short: `useradd` writes today's date into
//! `/etc/shadow`, so the tree would differ from build to build).

use std::collections::BTreeMap;
use std::path::Path;

use crate::accounts::{self, AccountName, DbFile, Field, LoginDefs, UseraddDefaults};
use crate::api::{option_path, Builtin, Context, ImagePath, Kind, Options, StageError, StageResult};
use crate::tree::{self, Tree};

/// Adds user accounts to the tree, or changes existing ones, by editing the
/// tree's `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow`
/// (and `/etc/subuid`, `/etc/subgid` when the tree has them). Defaults come from
/// the tree's `/etc/login.defs` and `/etc/default/useradd`, as `useradd` would
/// take them. A new user gets a home directory populated from the tree's
/// `/etc/skel`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// The accounts, keyed by user name. Users are handled in name order, so ids
    /// picked for users without a `uid` do not depend on how the manifest is
    /// written. A name already in the tree's `/etc/passwd` modifies that user:
    /// only the fields given change. Each user is an object with any of `uid`,
    /// `gid`, `groups`, `description`, `home`, `shell`, `password`, `key`, `keys`,
    /// `expiredate` and `force_password_reset`.
    #[serde(default)]
    users: BTreeMap<AccountName, User>,
}

/// One user account.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct User {
    /// Numeric user id. When absent for a new user, the next id after the highest
    /// one in use between `UID_MIN` and `UID_MAX` of the tree's `/etc/login.defs`
    /// (1000 and 60000 by default). An existing user's uid cannot be changed.
    #[serde(default, deserialize_with = "crate::api::whole::opt_u32")]
    uid: Option<u32>,
    /// Numeric id of the primary group. When absent for a new user, a group named
    /// like the user is used if it exists, or created (with the uid as its gid when
    /// that is free). When given and no group has this gid, a group named like the
    /// user is created with it.
    #[serde(default, deserialize_with = "crate::api::whole::opt_u32")]
    gid: Option<u32>,
    /// Supplementary groups, by name; each must exist in the tree's `/etc/group`.
    /// For an existing user, this replaces the user's supplementary groups.
    groups: Option<Vec<String>>,
    /// The account's description (GECOS field), usually the full name.
    description: Option<Field>,
    /// Absolute path of the home directory. Defaults to `HOME` of
    /// `/etc/default/useradd` (`/home`) plus the user name. The directory is
    /// created if missing, owned by the user, with the files of `/etc/skel`; an
    /// empty string keeps the default path but creates no directory.
    home: Option<Home>,
    /// Login shell. Defaults to `SHELL` of the tree's `/etc/default/useradd`, or
    /// `/bin/sh`.
    shell: Option<Field>,
    /// The password, already hashed as crypt(3) does (`$6$salt$hash`,
    /// `$y$...`), written to `/etc/shadow`. `!` or `*` lock the password. New users
    /// without one get a locked password (`!`).
    password: Option<Field>,
    /// An SSH public key added to `~/.ssh/authorized_keys` (kept if already there).
    /// `~/.ssh` is created with mode 0700 and the file has mode 0600, both owned
    /// by the user.
    key: Option<SshKey>,
    /// SSH public keys added to `~/.ssh/authorized_keys`, before `key` (as
    /// osbuild writes them). A key already in the file is not added again.
    keys: Option<Vec<SshKey>>,
    /// The day the account expires, in days since 1970-01-01 (shadow's expire field).
    expiredate: Option<u32>,
    /// Make the user change the password at the next login, as osbuild does
    /// (`passwd --expire`): the shadow last-change day becomes 0.
    #[serde(default)]
    force_password_reset: bool,
}

/// A home directory: an absolute path in the image that fits in
/// `/etc/passwd`, or empty for the default path without creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Home(String);

impl Home {
    fn parse(home: &str) -> Result<Self, String> {
        if !home.is_empty() {
            Field::parse(home)?;
            ImagePath::parse(home)?;
        }
        Ok(Home(home.to_string()))
    }
}

crate::string_newtype!(
    Home,
    {
        "type": "string",
        "pattern": "^(/(?!(.*/)?\\.\\.(/.*)?$)[^:\\n\\r]*)?$",
    }
);

/// One SSH public key: a single line (surrounding blanks are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SshKey(String);

impl SshKey {
    fn parse(key: &str) -> Result<Self, String> {
        if key.trim().contains('\n') {
            return Err("an SSH key must be a single line".into());
        }
        Ok(SshKey(key.trim().to_string()))
    }
}

crate::string_newtype!(
    SshKey,
    {
        "type": "string",
        "pattern": "^\\s*[^\\n]*\\s*$",
    }
);

/// What to do on the file system for a user once the account files are written.
struct HomePlan {
    user: String,
    uid: u32,
    gid: u32,
    home: String,
    create: bool,
    keys: Vec<String>,
}

struct Db {
    passwd: DbFile,
    shadow: DbFile,
    group: DbFile,
    gshadow: DbFile,
    subuid: DbFile,
    subgid: DbFile,
}

impl Options for Users {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = &ctx.open_tree()?;
        let defs = LoginDefs::load(tree);
        let defaults = accounts::useradd_defaults(tree);
        let mut db = Db {
            passwd: DbFile::load_required(tree, "etc/passwd", 7)?,
            shadow: DbFile::load(tree, "etc/shadow", 9)?,
            group: DbFile::load_required(tree, "etc/group", 4)?,
            gshadow: DbFile::load(tree, "etc/gshadow", 4)?,
            subuid: DbFile::load(tree, "etc/subuid", 3)?,
            subgid: DbFile::load(tree, "etc/subgid", 3)?,
        };
        let mut plans = Vec::new();
        for (name, user) in &self.users {
            let plan = if db.passwd.get(&name.0).is_some() {
                modify(&mut db, &name.0, user)?
            } else {
                add(&mut db, &name.0, user, &defs, &defaults)?
            };
            plans.push(plan);
        }
        for file in [&db.passwd, &db.shadow, &db.group, &db.gshadow, &db.subuid, &db.subgid] {
            file.save(tree)?;
        }
        for plan in plans {
            make_home(tree, &plan, &defs)?;
            add_keys(tree, &plan)?;
        }
        Ok(())
    }
}

fn wanted_keys(user: &User) -> Vec<String> {
    // osbuild's order: `keys` first, then `key`.
    user.keys
        .iter()
        .flatten()
        .chain(user.key.iter())
        .map(|k| k.to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

fn add(
    db: &mut Db,
    name: &str,
    user: &User,
    defs: &LoginDefs,
    defaults: &UseraddDefaults,
) -> Result<HomePlan, StageError> {
    let uid_min = defs.num("UID_MIN", 1000);
    let uid_max = defs.num("UID_MAX", 60000);
    let uid = match user.uid {
        Some(uid) => {
            if let Some(other) = db.passwd.entries().find(|f| f[2] == uid.to_string()) {
                return Err(format!("user {name}: uid {uid} is already used by user {}", other[0]).into());
            }
            uid
        }
        None => accounts::next_id(&db.passwd.ids(2), uid_min, uid_max)
            .ok_or_else(|| format!("user {name}: no free uid between {uid_min} and {uid_max}"))?,
    };
    check_groups(db, name, user)?;
    let gid = primary_group(db, name, user.gid, uid, defs, defaults)?;

    let base = defaults.get("HOME").map(String::as_str).unwrap_or("/home");
    let home = match user.home.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => format!("{}/{name}", base.trim_end_matches('/')),
    };
    let shell = user
        .shell
        .as_ref()
        .map(Field::to_string)
        .or_else(|| defaults.get("SHELL").cloned())
        .unwrap_or_else(|| "/bin/sh".into());
    let password = user.password.as_ref().map_or_else(|| "!".into(), Field::to_string);
    let description = user.description.as_ref().map(Field::to_string).unwrap_or_default();

    let pw_field = if db.shadow.present {
        "x".to_string()
    } else {
        password.clone()
    };
    db.passwd.push(vec![
        name.into(),
        pw_field,
        uid.to_string(),
        gid.to_string(),
        description,
        home.clone(),
        shell.clone(),
    ]);
    if db.shadow.present {
        let mut line = shadow_line(name, &password, user.expiredate, defs);
        if user.force_password_reset {
            line[2] = "0".into();
        }
        db.shadow.push(line);
    }
    if let Some(groups) = &user.groups {
        set_groups(db, name, groups, false);
    }
    if (uid_min..=uid_max).contains(&uid) {
        add_subids(&mut db.subuid, name, defs, "SUB_UID")?;
        add_subids(&mut db.subgid, name, defs, "SUB_GID")?;
    }
    println!(
        "added user {name} (uid {uid}, gid {gid}, home {home}, shell {shell}{})",
        match &user.groups {
            Some(g) if !g.is_empty() => format!(", groups {}", g.join(",")),
            _ => String::new(),
        }
    );
    Ok(HomePlan {
        user: name.into(),
        uid,
        gid,
        home,
        create: user.home.as_deref() != Some(""),
        keys: wanted_keys(user),
    })
}

/// A new shadow entry: aging fields from login.defs as `useradd` writes them, the
/// last-change day from `SOURCE_DATE_EPOCH` or empty (no aging) to stay reproducible.
fn shadow_line(name: &str, password: &str, expire: Option<u32>, defs: &LoginDefs) -> Vec<String> {
    let lastchg = last_change(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref());
    vec![
        name.into(),
        password.into(),
        lastchg,
        defs.str("PASS_MIN_DAYS").unwrap_or("").into(),
        defs.str("PASS_MAX_DAYS").unwrap_or("").into(),
        defs.str("PASS_WARN_AGE").unwrap_or("").into(),
        String::new(),
        expire.map(|e| e.to_string()).unwrap_or_default(),
        String::new(),
    ]
}

/// The shadow last-change day for `SOURCE_DATE_EPOCH`: its day, or empty when
/// unset or day 0 — a last change on day 0 means "must change the password at
/// the next login", and the engine sets `SOURCE_DATE_EPOCH=0`.
fn last_change(source_date_epoch: Option<&str>) -> String {
    source_date_epoch
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|secs| secs / 86400)
        .filter(|&days| days > 0)
        .map(|days| days.to_string())
        .unwrap_or_default()
}

fn modify(db: &mut Db, name: &str, user: &User) -> Result<HomePlan, StageError> {
    check_groups(db, name, user)?;
    if let Some(gid) = user.gid {
        if !db.group.ids(2).contains(&gid) {
            return Err(format!("user {name}: no group in the tree's /etc/group has gid {gid}").into());
        }
    }
    let shadow_present = db.shadow.present;
    let entry = db.passwd.get_mut(name).expect("modify is called for existing users");
    let mut changes = Vec::new();
    if let Some(uid) = user.uid {
        if entry[2] != uid.to_string() {
            return Err(format!(
                "user {name} exists with uid {}; changing an existing user's uid to {uid} is not supported",
                entry[2]
            )
            .into());
        }
    }
    let mut set = |index: usize, what: &'static str, value: Option<&str>| {
        if let Some(v) = value {
            entry[index] = v.to_string();
            changes.push(what);
        }
    };
    set(3, "gid", user.gid.map(|g| g.to_string()).as_deref());
    set(4, "description", user.description.as_deref());
    set(5, "home", user.home.as_deref().filter(|h| !h.is_empty()));
    set(6, "shell", user.shell.as_deref());
    if !shadow_present {
        set(1, "password", user.password.as_deref());
    }
    let (uid, gid, home) = (
        entry[2].parse().unwrap_or(0),
        entry[3].parse().unwrap_or(0),
        entry[5].clone(),
    );
    if shadow_present && (user.password.is_some() || user.expiredate.is_some() || user.force_password_reset) {
        match db.shadow.get_mut(name) {
            Some(s) => {
                if user.force_password_reset {
                    s[2] = "0".into();
                    changes.push("password reset forced");
                }
                if let Some(p) = &user.password {
                    s[1] = p.to_string();
                    changes.push("password");
                }
                if let Some(e) = user.expiredate {
                    s[7] = e.to_string();
                    changes.push("expiredate");
                }
            }
            None => {
                let mut line = shadow_line(
                    name,
                    user.password.as_deref().unwrap_or("!"),
                    user.expiredate,
                    &LoginDefs::empty(),
                );
                if user.force_password_reset {
                    line[2] = "0".into();
                }
                db.shadow.push(line);
                changes.push("shadow entry");
            }
        }
    }
    if let Some(groups) = &user.groups {
        set_groups(db, name, groups, true);
        changes.push("groups");
    }
    if changes.is_empty() {
        println!("user {name} exists; nothing to change");
    } else {
        println!("modified user {name}: {}", changes.join(", "));
    }
    Ok(HomePlan {
        user: name.into(),
        uid,
        gid,
        home,
        create: user.home.as_deref().is_some_and(|h| !h.is_empty()),
        keys: wanted_keys(user),
    })
}

fn check_groups(db: &Db, name: &str, user: &User) -> StageResult {
    for g in user.groups.iter().flatten() {
        if db.group.get(g).is_none() {
            return Err(format!("user {name}: group {g:?} is not in the tree's /etc/group").into());
        }
    }
    Ok(())
}

/// Makes `user` a member of exactly `groups` (or, unless `exact`, of at least them)
/// in `/etc/group` and `/etc/gshadow`.
fn set_groups(db: &mut Db, user: &str, groups: &[String], exact: bool) {
    for (file, index) in [(&mut db.group, 3), (&mut db.gshadow, 3)] {
        if !file.present {
            continue;
        }
        for f in file.entries_mut() {
            let wanted = groups.iter().any(|g| *g == f[0]);
            let mut list: Vec<&str> = accounts::members(&f[index]);
            let has = list.contains(&user);
            if wanted && !has {
                list.push(user);
            } else if !wanted && has && exact {
                list.retain(|m| *m != user);
            } else {
                continue;
            }
            f[index] = list.join(",");
        }
    }
}

/// The gid of a new user's primary group, creating the user's own group as `useradd` does.
fn primary_group(
    db: &mut Db,
    name: &str,
    gid: Option<u32>,
    uid: u32,
    defs: &LoginDefs,
    defaults: &UseraddDefaults,
) -> Result<u32, StageError> {
    let gids = db.group.ids(2);
    let own = db.group.get(name).map(|f| f[2].clone());
    match gid {
        Some(gid) if gids.contains(&gid) => Ok(gid),
        Some(gid) => match own {
            Some(other) => Err(format!(
                "user {name}: no group has gid {gid}, and group {name} (gid {other}) already exists"
            )
            .into()),
            None => {
                accounts::add_group(&mut db.group, &mut db.gshadow, name, gid, "");
                println!("added group {name} (gid {gid})");
                Ok(gid)
            }
        },
        None if defs
            .str("USERGROUPS_ENAB")
            .is_some_and(|v| v.eq_ignore_ascii_case("no")) =>
        {
            let group = defaults.get("GROUP").map(String::as_str).unwrap_or("100");
            group
                .parse()
                .ok()
                .or_else(|| db.group.get(group).and_then(|f| f[2].parse().ok()))
                .ok_or_else(|| format!("user {name}: default group {group:?} is not in the tree's /etc/group").into())
        }
        None => {
            if let Some(gid) = own {
                println!("user {name} joins the existing group {name} (gid {gid})");
                return gid
                    .parse()
                    .map_err(|_| format!("group {name} has a bad gid {gid:?} in /etc/group").into());
            }
            let (min, max) = (defs.num("GID_MIN", 1000), defs.num("GID_MAX", 60000));
            let gid = if gids.contains(&uid) {
                accounts::next_id(&gids, min, max)
                    .ok_or_else(|| format!("user {name}: no free gid between {min} and {max}"))?
            } else {
                uid
            };
            accounts::add_group(&mut db.group, &mut db.gshadow, name, gid, "");
            println!("added group {name} (gid {gid})");
            Ok(gid)
        }
    }
}

/// Gives a new user a range of subordinate ids, after the highest range in use.
fn add_subids(file: &mut DbFile, name: &str, defs: &LoginDefs, prefix: &str) -> StageResult {
    if !file.present || file.get(name).is_some() {
        return Ok(());
    }
    let min = u64::from(defs.num(&format!("{prefix}_MIN"), 100_000));
    let max = u64::from(defs.num(&format!("{prefix}_MAX"), 600_100_000));
    let count = u64::from(defs.num(&format!("{prefix}_COUNT"), 65536));
    if count == 0 {
        return Ok(());
    }
    let start = file
        .entries()
        .filter_map(|f| Some(f[1].parse::<u64>().ok()? + f[2].parse::<u64>().ok()?))
        .max()
        .unwrap_or(0)
        .max(min);
    if start + count - 1 > max {
        println!("warning: no free range of {count} ids left in {} for {name}", file.name);
        return Ok(());
    }
    file.push(vec![name.into(), start.to_string(), count.to_string()]);
    Ok(())
}

fn home_mode(defs: &LoginDefs) -> u32 {
    match defs.str("HOME_MODE") {
        Some(_) => defs.num("HOME_MODE", 0o755) & 0o7777,
        None => 0o777 & !defs.num("UMASK", 0o022),
    }
}

/// Creates the home directory from `/etc/skel` when it is missing.
fn make_home(tree: &Tree, plan: &HomePlan, defs: &LoginDefs) -> StageResult {
    if !plan.create && plan.keys.is_empty() {
        return Ok(());
    }
    let dir = option_path(&plan.home).map_err(|e| format!("user {}: {e}", plan.user))?;
    if tree.exists(&dir) {
        if plan.create {
            println!("home {} of {} already exists; left as it is", plan.home, plan.user);
        }
        return Ok(());
    }
    tree.create_parents(&dir)?;
    tree.create_dir(&dir, 0o755)?;
    tree.set_mode(&dir, home_mode(defs))?;
    tree.chown(&dir, plan.uid, plan.gid)?;
    let skel = Path::new("etc/skel");
    if tree.is_dir(skel) {
        copy_skel(tree, skel, &dir, plan.uid, plan.gid)?;
        println!(
            "created {} ({:04o}, {}:{}) from /etc/skel",
            plan.home,
            home_mode(defs),
            plan.uid,
            plan.gid
        );
    } else {
        println!(
            "created {} ({:04o}, {}:{})",
            plan.home,
            home_mode(defs),
            plan.uid,
            plan.gid
        );
    }
    Ok(())
}

/// Copies a skeleton directory (files, directories, symlinks) into a new home,
/// giving everything to the user; modes are kept.
fn copy_skel(tree: &Tree, from: &Path, to: &Path, uid: u32, gid: u32) -> StageResult {
    use std::os::unix::fs::MetadataExt;
    for entry in tree.read_dir(from)? {
        let src = from.join(&entry.name);
        let dst = to.join(&entry.name);
        match entry.kind {
            tree::Kind::Dir => {
                tree.create_dir(&dst, 0o700)?;
                copy_skel(tree, &src, &dst, uid, gid)?;
                tree.set_mode(&dst, tree.symlink_metadata(&src)?.mode() & 0o7777)?;
            }
            tree::Kind::Symlink => tree.symlink(tree.read_link(&src)?, &dst)?,
            tree::Kind::File => drop(tree.copy(&src, &dst)?),
            tree::Kind::Other => continue,
        }
        tree.chown(&dst, uid, gid)?;
    }
    Ok(())
}

/// Adds the keys missing from `~/.ssh/authorized_keys`.
fn add_keys(tree: &Tree, plan: &HomePlan) -> StageResult {
    if plan.keys.is_empty() {
        return Ok(());
    }
    let home = option_path(&plan.home)?;
    let ssh = home.join(".ssh");
    if !tree.is_dir(&ssh) {
        tree.create_dir(&ssh, 0o700)?;
    }
    tree.set_mode(&ssh, 0o700)?;
    tree.chown(&ssh, plan.uid, plan.gid)?;
    let file = ssh.join("authorized_keys");
    let mut text = match tree.read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut added = 0;
    for key in &plan.keys {
        if text.lines().any(|l| l.trim() == key) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(key);
        text.push('\n');
        added += 1;
    }
    // A new file, not written through a symlink planted in the home.
    tree.write_with(&file, 0o600, Some((plan.uid, plan.gid)), |f| {
        std::io::Write::write_all(f, text.as_bytes())
    })?;
    println!(
        "added {added} of {} SSH key(s) to {}/.ssh/authorized_keys of {}",
        plan.keys.len(),
        plan.home.trim_end_matches('/'),
        plan.user
    );
    Ok(())
}

pub static STAGE: Builtin = Builtin::new::<Users>(
    "org.osbuild.users",
    Kind::Stage,
    "Adds or modifies user accounts, homes and SSH keys",
);

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    pub const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
";
    pub const SHADOW: &str = "\
root:*:19600:0:99999:7:::
daemon:*:19600:0:99999:7:::
bin:*:19600:0:99999:7:::
sys:*:19600:0:99999:7:::
sync:*:19600:0:99999:7:::
_apt:*:19600:0:99999:7:::
nobody:*:19600:0:99999:7:::
systemd-network:!*:19600::::::
";
    pub const GROUP: &str = "\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
sudo:x:27:
shadow:x:42:
users:x:100:
nogroup:x:65534:
systemd-journal:x:999:
systemd-network:x:998:
";
    pub const GSHADOW: &str = "\
root:*::
daemon:*::
bin:*::
sys:*::
adm:*::
sudo:*::
shadow:*::
users:*::
nogroup:*::
systemd-journal:!*::
systemd-network:!*::
";
    const LOGIN_DEFS: &str = "\
# /etc/login.defs - Configuration control definitions for the login package.
MAIL_DIR        /var/mail
UMASK\t\t022
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS\t0
PASS_WARN_AGE\t7
UID_MIN\t\t\t 1000
UID_MAX\t\t\t60000
#SYS_UID_MIN\t\t  100
SUB_UID_MIN\t\t   100000
SUB_UID_MAX\t\t600100000
SUB_UID_COUNT\t\t    65536
GID_MIN\t\t\t 1000
GID_MAX\t\t\t60000
SUB_GID_MIN\t\t   100000
SUB_GID_MAX\t\t600100000
SUB_GID_COUNT\t\t    65536
USERGROUPS_ENAB yes
ENCRYPT_METHOD SHA512
";

    /// A Debian bookworm tree's account files, login.defs, useradd defaults and skel.
    pub fn debian_tree(label: &str) -> TempTree {
        let t = TempTree::new(label);
        t.write("etc/passwd", PASSWD);
        let shadow = t.write("etc/shadow", SHADOW);
        t.write("etc/group", GROUP);
        let gshadow = t.write("etc/gshadow", GSHADOW);
        for p in [shadow, gshadow] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            std::os::unix::fs::chown(&p, Some(0), Some(42)).unwrap();
        }
        t.write("etc/subuid", "");
        t.write("etc/subgid", "");
        t.write("etc/login.defs", LOGIN_DEFS);
        t.write(
            "etc/default/useradd",
            "# Default values for useradd(8)\n# SHELL=/bin/sh\nSHELL=/bin/sh\n",
        );
        t.write(
            "etc/skel/.bashrc",
            "# ~/.bashrc: executed by bash(1) for non-login shells.\n",
        );
        t.write(
            "etc/skel/.profile",
            "# ~/.profile: executed by the command interpreter for login shells.\n",
        );
        t.write(
            "etc/skel/.bash_logout",
            "# ~/.bash_logout: executed by bash(1) when login shell exits.\n",
        );
        t.write("etc/skel/.config/autostart/README", "skel subdirectory\n");
        std::fs::create_dir_all(t.join("home")).unwrap();
        t
    }

    const HASH: &str =
        "$6$s06sY2/bZbmuyE4a$JTn/Ki2jbNG.wGeCvt6mcjaIZ2HV.H8VjLzIMZs7f2G48NMFlcB2/OhbHZ6HhZAOcb.CmUb2qywSW2DkKe6gn0";
    const KEY1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOjP4dTX0sZVqEGbiA7Uyy8cNNdd2kGbmIBCKbexWDQx alice@laptop";
    const KEY2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice@desktop";

    #[test]
    fn last_change_day() {
        assert_eq!(super::last_change(None), "");
        assert_eq!(super::last_change(Some("0")), "");
        assert_eq!(super::last_change(Some("1700000000")), "19675");
        assert_eq!(super::last_change(Some("soon")), "");
    }

    #[test]
    fn osbuild_manifests_check() {
        // From osbuild's test/data/stages/users/b.mpp.yaml.
        let b = json!({"users": {
            "test": {"password": HASH},
            "test.user_42-OSBUILD": {"password": HASH},
            "nohome": {"home": "", "uid": 1337},
            "elodie": {"home": "", "uid": 2000}
        }});
        assert!(STAGE.check(&b).is_empty());
        assert!(STAGE
            .check(&json!({"users": {"elodie": {"home": "/home/elodie", "uid": 2000}}}))
            .is_empty());
        // The shape osbuild-composer writes for a blueprint user.
        assert!(STAGE
            .check(&json!({"users": {"admin": {
                "uid": 1001, "gid": 1001, "groups": ["wheel"], "description": "Admin",
                "home": "/home/admin", "shell": "/bin/bash", "password": HASH,
                "key": KEY1, "keys": [KEY2], "expiredate": 20000
            }}}))
            .is_empty());
        let bad = STAGE.check(&json!({"users": {"-x": {}}}));
        assert!(
            bad[0].message.contains("not a valid account name"),
            "{}",
            bad[0].message
        );
        assert!(!STAGE.check(&json!({"users": {"x": {"nope": 1}}})).is_empty());
    }

    #[test]
    fn values_are_checked_first() {
        let problem = |user: serde_json::Value| {
            let e = STAGE.check(&json!({"users": {"eve": user}}));
            assert_eq!(e.len(), 1, "{e:?}");
            (crate::api::path_text(&e[0].path), e[0].message.clone())
        };
        let (path, message) = problem(json!({"home": "home/eve"}));
        assert_eq!(path, "users.eve.home");
        assert!(message.contains("must be absolute"), "{message}");
        assert_eq!(problem(json!({"home": "/home/../eve"})).0, "users.eve.home");
        assert_eq!(problem(json!({"home": "/home/e:ve"})).0, "users.eve.home");
        assert_eq!(problem(json!({"description": "a:b"})).0, "users.eve.description");
        assert_eq!(problem(json!({"shell": "/bin/sh\n"})).0, "users.eve.shell");
        assert_eq!(problem(json!({"password": "x:y"})).0, "users.eve.password");
        assert_eq!(
            problem(json!({"keys": ["ssh-ed25519 A", "a\nb"]})).0,
            "users.eve.keys[1]"
        );
        assert!(STAGE
            .check(&json!({"users": {"eve": {"home": "", "key": " ssh-ed25519 A x\n"}}}))
            .is_empty());
    }

    #[test]
    fn adds_users_debian() {
        let t = debian_tree("users-add");
        let options = json!({"users": {
            "nohome": {"home": ""},
            "bob": {"uid": 2000, "shell": "/bin/bash", "force_password_reset": true},
            "alice": {
                "description": "Alice Example",
                "groups": ["sudo", "users"],
                "password": HASH,
                "key": KEY1,
                "keys": [KEY2, KEY1]
            }
        }});
        assert!(STAGE.check(&options).is_empty());
        STAGE.run(&t.ctx(), &options).unwrap();

        assert_eq!(
            t.read("etc/passwd"),
            format!(
                "{PASSWD}\
alice:x:1000:1000:Alice Example:/home/alice:/bin/sh
bob:x:2000:2000::/home/bob:/bin/bash
nohome:x:2001:2001::/home/nohome:/bin/sh
"
            )
        );
        // Empty unless the test runs with SOURCE_DATE_EPOCH set.
        let day = super::last_change(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref());
        assert_eq!(
            t.read("etc/shadow"),
            format!(
                "{SHADOW}\
alice:{HASH}:{day}:0:99999:7:::
bob:!:0:0:99999:7:::
nohome:!:{day}:0:99999:7:::
"
            )
        );
        assert_eq!(
            t.read("etc/group"),
            GROUP
                .replace("sudo:x:27:", "sudo:x:27:alice")
                .replace("users:x:100:", "users:x:100:alice")
                + "alice:x:1000:\nbob:x:2000:\nnohome:x:2001:\n"
        );
        assert_eq!(
            t.read("etc/gshadow"),
            GSHADOW
                .replace("sudo:*::", "sudo:*::alice")
                .replace("users:*::", "users:*::alice")
                + "alice:!::\nbob:!::\nnohome:!::\n"
        );
        assert_eq!(t.stat("etc/shadow"), (0o640, 0, 42));
        assert_eq!(t.stat("etc/gshadow"), (0o640, 0, 42));
        assert_eq!(
            t.read("etc/subuid"),
            "alice:100000:65536\nbob:165536:65536\nnohome:231072:65536\n"
        );
        assert_eq!(t.read("etc/subgid"), t.read("etc/subuid"));

        assert_eq!(t.stat("home/alice"), (0o755, 1000, 1000));
        assert_eq!(t.stat("home/alice/.bashrc"), (0o644, 1000, 1000));
        assert_eq!(t.read("home/alice/.profile"), t.read("etc/skel/.profile"));
        assert_eq!(t.stat("home/alice/.config/autostart"), (0o755, 1000, 1000));
        assert_eq!(t.stat("home/alice/.config/autostart/README"), (0o644, 1000, 1000));
        assert_eq!(t.stat("home/alice/.ssh"), (0o700, 1000, 1000));
        assert_eq!(t.stat("home/alice/.ssh/authorized_keys"), (0o600, 1000, 1000));
        // osbuild's order, `keys` then `key`; a key already there is not repeated.
        assert_eq!(t.read("home/alice/.ssh/authorized_keys"), format!("{KEY2}\n{KEY1}\n"));
        assert_eq!(t.stat("home/bob"), (0o755, 2000, 2000));
        assert!(!t.exists("home/nohome"));
    }

    #[test]
    fn modifies_existing_users() {
        let t = debian_tree("users-modify");
        t.write(
            "etc/passwd",
            &format!("{PASSWD}carol:x:1000:1000:Carol:/home/carol:/bin/bash\n"),
        );
        t.write(
            "etc/group",
            &format!("{}carol:x:1000:\n", GROUP.replace("adm:x:4:", "adm:x:4:carol")),
        );
        t.write("root/.ssh/authorized_keys", KEY2);
        let options = json!({"users": {
            "root": {"password": HASH, "keys": [KEY1]},
            "carol": {"groups": ["sudo"], "shell": "/bin/zsh", "uid": 1000, "home": "/home/carol"}
        }});
        STAGE.run(&t.ctx(), &options).unwrap();
        let passwd = t.read("etc/passwd");
        assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/bash\n"), "{passwd}");
        assert!(
            passwd.ends_with("carol:x:1000:1000:Carol:/home/carol:/bin/zsh\n"),
            "{passwd}"
        );
        assert!(t
            .read("etc/shadow")
            .starts_with(&format!("root:{HASH}:19600:0:99999:7:::\n")));
        let group = t.read("etc/group");
        assert!(
            group.contains("\nadm:x:4:\n") && group.contains("\nsudo:x:27:carol\n"),
            "{group}"
        );
        assert!(t.read("etc/gshadow").contains("\nsudo:*::carol\n"));
        assert_eq!(t.read("root/.ssh/authorized_keys"), format!("{KEY2}\n{KEY1}\n"));
        assert_eq!(t.stat("root/.ssh/authorized_keys"), (0o600, 0, 0));
        // The home named explicitly for an existing user is created if missing.
        assert_eq!(t.stat("home/carol"), (0o755, 1000, 1000));
        assert!(t.exists("home/carol/.bashrc"));
        // No new subordinate ids for existing users.
        assert_eq!(t.read("etc/subuid"), "");
    }

    #[test]
    fn refuses_conflicts() {
        let t = debian_tree("users-conflicts");
        let uid_taken = json!({"users": {"eve": {"uid": 998}}});
        let e = STAGE.run(&t.ctx(), &uid_taken).unwrap_err();
        assert_eq!(e.0, "user eve: uid 998 is already used by user systemd-network");
        let uid_change = json!({"users": {"nobody": {"uid": 1}}});
        let e = STAGE.run(&t.ctx(), &uid_change).unwrap_err();
        assert!(e.0.starts_with("user nobody exists with uid 65534"), "{}", e.0);
        let no_group = json!({"users": {"eve": {"groups": ["wheel"]}}});
        let e = STAGE.run(&t.ctx(), &no_group).unwrap_err();
        assert_eq!(e.0, "user eve: group \"wheel\" is not in the tree's /etc/group");
        let colon = json!({"users": {"eve": {"description": "a:b"}}});
        let e = STAGE.run(&t.ctx(), &colon).unwrap_err();
        assert!(
            e.0.starts_with("invalid options: at `users.eve.description`:"),
            "{}",
            e.0
        );
        // Nothing was written by the failed runs.
        assert_eq!(t.read("etc/passwd"), PASSWD);
        assert_eq!(t.read("etc/group"), GROUP);
    }

    #[test]
    fn uses_given_and_existing_groups() {
        let t = debian_tree("users-gid");
        t.write("etc/group", &format!("{GROUP}dev:x:1500:\nfrank:x:1600:\n"));
        let options = json!({"users": {
            "dave": {"gid": 1500},
            "erin": {"uid": 1700, "gid": 1800},
            "frank": {}
        }});
        STAGE.run(&t.ctx(), &options).unwrap();
        let passwd = t.read("etc/passwd");
        assert!(passwd.ends_with(
            "dave:x:1000:1500::/home/dave:/bin/sh\nerin:x:1700:1800::/home/erin:/bin/sh\nfrank:x:1701:1600::/home/frank:/bin/sh\n"
        ), "{passwd}");
        assert!(t
            .read("etc/group")
            .ends_with("dev:x:1500:\nfrank:x:1600:\nerin:x:1800:\n"));
        assert_eq!(t.stat("home/frank"), (0o755, 1701, 1600));
    }
}
