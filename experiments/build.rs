//! Embeds every `configs/*.toml` in the binary: generates `$OUT_DIR/named_configs.rs`, a sorted list of
//! `(name, include_str!(...))` pairs, so `bellman train <name>` works with no files around.
use std::io::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    // A directory here makes cargo rescan it for added, removed or changed files.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<(String, String)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("toml")
                && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
            {
                entries.push((stem.to_string(), p.display().to_string()));
            }
        }
    }
    entries.sort();
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("named_configs.rs");
    let mut f = std::fs::File::create(&out).expect("create named_configs.rs in OUT_DIR");
    writeln!(f, "/// Every embedded experiment config: `(name, TOML text)`, sorted by name.").unwrap();
    writeln!(f, "pub static NAMED: &[(&str, &str)] = &[").unwrap();
    for (name, path) in &entries {
        writeln!(f, "    ({name:?}, include_str!({path:?})),").unwrap();
    }
    writeln!(f, "];").unwrap();
}
