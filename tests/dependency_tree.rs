//! What a user of `db_txn` compiles (issue 13): the runtime's locked
//! dependency tree, normal and build dependencies, read with `cargo tree`
//! and `cargo metadata`.
//!
//! - The declared `rust-version` (`[workspace.package]` in Cargo.toml) is at
//!   least what every crate of the tree declares, with all features on and
//!   for every target platform. Only a toolchain that old could check our
//!   own code; clippy's `incompatible_msrv` lint catches std APIs newer
//!   than it.
//! - A backend feature builds that backend's client library only: no
//!   SQLite for a PostgreSQL user, and SQLite's C sources only with
//!   `bundled-sqlite`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

mod json;

use json::Value;

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{cargo} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cargo} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo's output is UTF-8")
}

/// `cargo tree` of `db_txn` with `features` (`--all-features` or
/// `--features=...`) and `edges` (dev-dependencies left out), on every
/// platform, one package or feature per line.
fn runtime_tree(features: &str, edges: &str, more: &[&str]) -> String {
    let args = [
        "tree",
        "--locked",
        "--package",
        "db_txn",
        features,
        "--edges",
        edges,
        "--target",
        "all",
        "--prefix",
        "none",
    ];
    cargo(&[&args[..], more].concat())
}

/// `(name, version)` of every package `db_txn` builds, itself included.
fn runtime_closure() -> BTreeSet<(String, String)> {
    // Lines are `name vX.Y.Z`, maybe followed by `(path)` or `(*)`.
    runtime_tree("--all-features", "normal,build", &[])
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// `(name, version)` → `rust-version`, for every package of the lock file.
fn declared_rust_versions() -> BTreeMap<(String, String), Option<String>> {
    let metadata = json::parse(&cargo(&["metadata", "--locked", "--format-version", "1"]))
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    let field =
        |package: &Value, key: &str| package.get(key).and_then(Value::as_str).map(str::to_owned);
    metadata
        .get("packages")
        .and_then(Value::as_array)
        .expect("cargo metadata lists packages")
        .iter()
        .map(|p| {
            let name = field(p, "name").expect("a package has a name");
            let version = field(p, "version").expect("a package has a version");
            ((name, version), field(p, "rust_version"))
        })
        .collect()
}

/// `1.86` or `1.86.0` as a comparable triple.
fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.split('.').map(|n| {
        n.parse()
            .unwrap_or_else(|_| panic!("rust-version {text:?} is not a version"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn declared_rust_version_covers_every_dependency_of_the_runtime() {
    let closure = runtime_closure();
    let names: BTreeSet<&str> = closure.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "db_txn",
        "db_txn_macros",
        "diesel",
        "r2d2",
        "libsqlite3-sys",
    ] {
        assert!(
            names.contains(expected),
            "`cargo tree` of db_txn lacks {expected}: {names:?}"
        );
    }
    let rust_versions = declared_rust_versions();
    let rust_version = |package: &(String, String)| {
        rust_versions
            .get(package)
            .unwrap_or_else(|| panic!("{package:?} is not in `cargo metadata`"))
            .as_deref()
    };
    let declared = rust_version(&("db_txn".into(), env!("CARGO_PKG_VERSION").into()))
        .expect("db_txn declares a rust-version");

    let mut needs: Vec<(_, _, _)> = closure
        .iter()
        .filter_map(|p| rust_version(p).map(|v| (parse_version(v), v, p)))
        .collect();
    needs.sort();
    let (highest, ..) = needs
        .last()
        .expect("some dependency declares a rust-version");
    let too_new: Vec<String> = needs
        .iter()
        .filter(|(v, ..)| *v > parse_version(declared))
        .map(|(_, v, (name, version))| format!("{name} {version} needs {v}"))
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version = {declared:?} in Cargo.toml, but:\n  {}\nraise it to {}.{} \
         (or lock older versions of these crates)",
        too_new.join("\n  "),
        highest.0,
        highest.1,
    );
}

/// The packages `db_txn` builds with `features`, and whether SQLite's C
/// sources are among them (`libsqlite3-sys` with its `bundled` feature).
fn with_features(features: &str) -> (BTreeSet<String>, bool) {
    let features = format!("--features={features}");
    let packages: BTreeSet<String> = runtime_tree(&features, "normal,build", &[])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // The features a package has on are listed under it in the inverted
    // tree, as `libsqlite3-sys feature "bundled"`.
    let bundled = packages.contains("libsqlite3-sys")
        && runtime_tree(
            &features,
            "normal,build,features",
            &["--invert", "libsqlite3-sys"],
        )
        .lines()
        .any(|line| line.trim_end_matches(" (*)") == r#"libsqlite3-sys feature "bundled""#);
    (packages, bundled)
}

#[test]
fn each_backend_feature_builds_only_its_own_client_library() {
    let sys = ["libsqlite3-sys", "mysqlclient-sys", "pq-sys"];
    for (features, wanted) in [
        ("postgres", Some("pq-sys")),
        ("mysql", Some("mysqlclient-sys")),
        ("sqlite", Some("libsqlite3-sys")),
        ("bundled-sqlite", Some("libsqlite3-sys")),
        ("", None),
    ] {
        let (packages, bundled) = with_features(features);
        assert!(
            packages.contains("diesel"),
            "--features={features:?}: {packages:?}"
        );
        for lib in sys {
            assert_eq!(
                packages.contains(lib),
                Some(lib) == wanted,
                "--features={features:?} and {lib}: {packages:?}"
            );
        }
        assert_eq!(
            bundled,
            features == "bundled-sqlite",
            "--features={features:?} and SQLite's C sources"
        );
    }
}
