//! The structure checks of `make lint`: `scripts/check-layers.sh` (the module table of
//! ARCHITECTURE.md, no wall-clock reads outside the clock) and `scripts/check-sizes.sh`
//! (function and file sizes) pass on the tree, and fail on what they must refuse —
//! tried on a copy of `src/` with one change each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(script: &str, args: &[&Path]) -> Output {
    Command::new("bash")
        .arg(root().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"))
}

/// A copy of `src/` and of ARCHITECTURE.md, with `edit` applied to the copy.
fn copy_with(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&root().join("src"), &src);
    let table = tmp.path().join("ARCHITECTURE.md");
    std::fs::copy(root().join("ARCHITECTURE.md"), &table).unwrap();
    edit(&src);
    (tmp, src, table)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_tree_keeps_its_layers_and_sizes() {
    let layers = run("check-layers.sh", &[]);
    assert!(layers.status.success(), "{}", stderr(&layers));
    let sizes = run("check-sizes.sh", &[]);
    assert!(sizes.status.success(), "{}", stderr(&sizes));
}

#[test]
fn a_forbidden_edge_fails_the_layer_check() {
    // The pure SAML core reaching up into the web layer.
    let (_tmp, src, table) = copy_with(|src| {
        append(
            &src.join("saml/mod.rs"),
            "\npub fn reach_up() -> &'static str { let _ = crate::web::AppError::not_found; \"\" }\n",
        );
    });
    let o = run("check-layers.sh", &[&src, &table]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("forbidden edge saml -> web"),
        "{}",
        stderr(&o)
    );
    // A nested `use crate::{…}` group and a `super::super::` path count too.
    let (_tmp, src, table) = copy_with(|src| {
        append(
            &src.join("accounts/sql/mod.rs"),
            "\nuse crate::{\n    oidc::provider::OidcError,\n};\n",
        );
        append(
            &src.join("mail/outbox.rs"),
            "\npub fn up() { let _ = super::super::sso::SsoError::Replay; }\n",
        );
    });
    let err = stderr(&run("check-layers.sh", &[&src, &table]));
    assert!(err.contains("forbidden edge accounts -> oidc"), "{err}");
    assert!(err.contains("forbidden edge mail -> sso"), "{err}");
}

#[test]
fn test_code_may_use_any_module() {
    let (_tmp, src, _table) = copy_with(|src| {
        append(
            &src.join("saml/mod.rs"),
            "\n#[cfg(test)]\nmod layer_probe {\n    use crate::web::AppError;\n    fn f() -> AppError { AppError::not_found() }\n}\n",
        );
    });
    let o = run("check-layers.sh", &["--edges".as_ref(), src.as_path()]);
    assert!(o.status.success());
    let edges = String::from_utf8_lossy(&o.stdout);
    assert!(!edges.contains("saml -> web"), "{edges}");
}

#[test]
fn a_wall_clock_read_a_module_missing_from_the_table_or_an_undocumented_file_fails() {
    let (_tmp, src, table) = copy_with(|src| {
        append(
            &src.join("txlog.rs"),
            "\npub fn stamp() -> String { chrono::Utc::now().to_rfc3339() }\n",
        );
        std::fs::write(src.join("orphan.rs"), "//! Not in the table.\n").unwrap();
        std::fs::write(src.join("saml/bare.rs"), "pub fn f() {}\n").unwrap();
    });
    let err = stderr(&run("check-layers.sh", &[&src, &table]));
    assert!(
        err.contains("src/txlog.rs:") && err.contains("reads the wall clock"),
        "{err}"
    );
    assert!(err.contains("module `orphan`"), "{err}");
    assert!(
        err.contains("src/saml/bare.rs does not open with a //! comment"),
        "{err}"
    );
}

#[test]
fn a_long_function_fails_the_size_check() {
    let (_tmp, src, table) = copy_with(|src| {
        let body: String = (0..81).map(|i| format!("    let _v{i} = {i};\n")).collect();
        append(
            &src.join("txlog.rs"),
            &format!("\npub fn long_one() {{\n{body}}}\n"),
        );
    });
    let err = stderr(&run("check-sizes.sh", &[&src, &table]));
    assert!(err.contains("txlog.rs::long_one: 83 lines"), "{err}");
}
