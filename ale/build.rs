//! Builds ALE 0.12.1 (the C++ core of the PyPI package `ale-py==0.12.1`) and the C shim with the `cc` crate.
//!
//! Source: `ALE_SRC_DIR` (the unpacked sdist root, or its `src/ale` folder), else the sdist fetched with
//! `pip download ale-py==0.12.1 --no-binary :all: --no-deps --no-build-isolation` (pip prepares the sdist's
//! metadata, which needs `scikit-build-core` and `cmake` installed: `scripts/setup-atari.sh` installs both), checked
//! against its SHA-256 and unpacked with `tar`. No ALE source is part of this repository.
//!
//! Only the emulator core is compiled (`common`, `emucore`, `environment`, `games`, `games/supported`, the lists
//! read from ALE's own CMakeLists.txt, plus `ale_interface.cpp`): no SDL, no Python bindings, no vector env.
//! The compiled core is cached under `<target>/bellman-ale-cache/` keyed by the source and flags, so the dev,
//! test and release profiles share one build (ALE is always compiled with `-O3 -DNDEBUG`). The key does not hash
//! the source files' contents: after editing ALE sources under `ALE_SRC_DIR`, delete `target/bellman-ale-cache`.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const ALE_VERSION: &str = "0.12.1";
/// SHA-256 of `ale_py-0.12.1.tar.gz` as served by PyPI (measured on the file pip downloaded, 2026-11-27).
const SDIST_SHA256: &str = "c503d574c5983e1063b451201ccb779d935919c0f6bf116fb0f4f8aa4c86d249";
/// Flags of the ALE core; `NDEBUG` is required: ALE asserts `seed >= 0` in stella_environment.cpp, and Gymnasium
/// passes negative (wrapped uint32) seeds. The ale-py wheel is built the same way (CMake Release: -O3 -DNDEBUG).
const FLAGS: &[&str] = &["-std=c++17", "-O3", "-DNDEBUG", "-w", "-fPIC"];
const SUBDIRS: &[&str] = &["common", "emucore", "environment", "games", "games/supported"];
/// SDL front-end files: empty without SDL_SUPPORT / SDL_DYNLOAD, skipped to save compile time.
const SKIP: &[&str] = &["SDL2.cpp", "ScreenSDL.cpp", "SoundSDL.cxx", "DynamicLoad.cpp"];

fn main() {
    println!("cargo:rerun-if-env-changed=ALE_SRC_DIR");
    println!("cargo:rerun-if-changed=shim/ale_shim.cpp");
    println!("cargo:rerun-if-changed=shim/ale_shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_LINK").is_none() {
        // Without the `link` feature the crate is empty: nothing to fetch, compile or link.
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let ale = match locate_source(&out) {
        Ok(p) => p,
        Err(e) => panic!("bellman-ale: cannot get the ALE {ALE_VERSION} sources: {e}"),
    };
    let root = ale.parent().and_then(Path::parent).expect("src/ale has two parents").to_path_buf();

    // version.hpp, as ALE's CMake configure_file writes it from version.hpp.in.
    let gen_dir = out.join("gen");
    fs::create_dir_all(&gen_dir).unwrap();
    let tmpl = fs::read_to_string(ale.join("version.hpp.in")).expect("version.hpp.in");
    let mut parts = ALE_VERSION.split('.');
    let v = tmpl
        .replace("@ALE_VERSION@", ALE_VERSION)
        .replace("@ALE_VERSION_MAJOR@", parts.next().unwrap())
        .replace("@ALE_VERSION_MINOR@", parts.next().unwrap())
        .replace("@ALE_VERSION_PATCH@", parts.next().unwrap())
        .replace("@ALE_VERSION_GIT_SHA@", "sdist");
    write_if_changed(&gen_dir.join("version.hpp"), &v);

    let mut sources = vec![ale.join("ale_interface.cpp")];
    for d in SUBDIRS {
        let cm = fs::read_to_string(ale.join(d).join("CMakeLists.txt")).expect("CMakeLists.txt");
        for tok in cm.split_whitespace() {
            if (tok.ends_with(".cpp") || tok.ends_with(".cxx")) && !SKIP.contains(&tok) {
                sources.push(ale.join(d).join(tok));
            }
        }
    }

    // Cache key: the version, flags, compiler and the list of sources.
    let compiler = env::var("CXX").unwrap_or_else(|_| "c++".into());
    let mut h = Sha256::new();
    h.update(ALE_VERSION);
    h.update(FLAGS.join(" "));
    h.update(&compiler);
    h.update(env::var("TARGET").unwrap_or_default());
    for s in &sources {
        h.update(s.strip_prefix(&root).unwrap_or(s).to_string_lossy().as_bytes());
    }
    let key: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cache = target_dir(&out).map(|t| t.join("bellman-ale-cache").join(format!("{ALE_VERSION}-{key}")));
    let lib_name = "libbellman_ale_core.a";

    let cached = cache.as_ref().map(|c| c.join(lib_name)).filter(|p| p.exists());
    match cached {
        Some(lib) => {
            fs::copy(&lib, out.join(lib_name)).expect("copy cached ALE core");
        }
        None => {
            let mut b = base_build(&root, &gen_dir);
            b.files(&sources).cargo_metadata(false);
            b.compile("bellman_ale_core");
            if let Some(c) = &cache {
                // Best effort: write to a temp name, then rename (atomic on one file system).
                if fs::create_dir_all(c).is_ok() {
                    let tmp = c.join(format!("{lib_name}.{}", std::process::id()));
                    if fs::copy(out.join(lib_name), &tmp).is_ok() {
                        let _ = fs::rename(&tmp, c.join(lib_name));
                    }
                }
            }
        }
    }

    // The shim first (cc prints its link line), then the core it calls, then what the core needs.
    let mut shim = base_build(&root, &gen_dir);
    shim.file("shim/ale_shim.cpp");
    shim.compile("bellman_ale_shim");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=bellman_ale_core");
    println!("cargo:rustc-link-lib=z");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
}

fn base_build(root: &Path, gen_dir: &Path) -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true).include(root.join("src")).include(gen_dir).opt_level(3).debug(false).warnings(false);
    for f in FLAGS {
        b.flag(f);
    }
    b
}

fn write_if_changed(p: &Path, s: &str) {
    if fs::read_to_string(p).ok().as_deref() != Some(s) {
        fs::write(p, s).unwrap();
    }
}

/// The cargo target directory (the ancestor of OUT_DIR holding `build/`), for the shared cache.
fn target_dir(out: &Path) -> Option<PathBuf> {
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out (or <target>/<triple>/<profile>/build/...)
    out.ancestors().find(|a| a.file_name().is_some_and(|n| n == "build")).and_then(|b| {
        let profile_dir = b.parent()?;
        let t = profile_dir.parent()?;
        // A build with an explicit `--target` has one more level (<target>/<triple>/<profile>). (CACHEDIR.TAG is
        // not a test: a fresh CARGO_TARGET_DIR has none yet, which once put the cache beside it.)
        let triple = env::var("TARGET").unwrap_or_default();
        let cross = !triple.is_empty() && t.file_name().is_some_and(|n| n == triple.as_str());
        Some(if cross { t.parent().unwrap_or(t).to_path_buf() } else { t.to_path_buf() })
    })
}

/// Returns the `src/ale` folder of the ALE sources.
fn locate_source(out: &Path) -> Result<PathBuf, String> {
    if let Ok(dir) = env::var("ALE_SRC_DIR") {
        let d = PathBuf::from(&dir);
        for cand in [d.join("src").join("ale"), d.clone()] {
            if cand.join("ale_interface.cpp").exists() {
                return Ok(cand);
            }
        }
        return Err(format!(
            "ALE_SRC_DIR={dir} holds neither src/ale/ale_interface.cpp nor ale_interface.cpp; point it at the \
             unpacked ale-py-{ALE_VERSION} sdist"
        ));
    }
    let unpacked = out.join(format!("ale_py-{ALE_VERSION}"));
    let ale = unpacked.join("src").join("ale");
    if ale.join("ale_interface.cpp").exists() {
        return Ok(ale);
    }
    let dl = out.join("sdist");
    let tarball = dl.join(format!("ale_py-{ALE_VERSION}.tar.gz"));
    if !tarball.exists() {
        let python = env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "pip", "download", &format!("ale-py=={ALE_VERSION}")])
            .args(["--no-binary", ":all:", "--no-deps", "--no-build-isolation", "-d"])
            .arg(&dl)
            .status()
            .map_err(|e| format!("cannot run `{python} -m pip`: {e}"))?;
        if !status.success() || !tarball.exists() {
            return Err(format!(
                "`{python} -m pip download ale-py=={ALE_VERSION} --no-binary :all: --no-deps --no-build-isolation` \
                 failed ({status}); pip needs `pip install scikit-build-core cmake` to read the sdist's metadata. \
                 Run scripts/setup-atari.sh, or set ALE_SRC_DIR to an unpacked ale-py-{ALE_VERSION} sdist"
            ));
        }
    }
    let bytes = fs::read(&tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got != SDIST_SHA256 {
        let _ = fs::remove_file(&tarball);
        return Err(format!("{} has SHA-256 {got}, expected {SDIST_SHA256}", tarball.display()));
    }
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() || !ale.join("ale_interface.cpp").exists() {
        return Err(format!("unpacking {} failed ({status})", tarball.display()));
    }
    Ok(ale)
}
