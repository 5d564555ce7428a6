//! Versioned binary save/load, written atomically (temp file in the same directory, fsync, rename).
//!
//! Layout (all integers little-endian): magic `BELLRPLY`, format version `u32`, buffer kind (`u8` length +
//! UTF-8: `uniform` or `prioritized`), storage kind (`flat` or `frames`), observation and action element codes
//! (`u8` each), the storage state, the sampler state, and the end marker `END!`. Nothing may follow.
//!
//! Loading trusts nothing: sizes read from a header are checked against the bytes left in the file before
//! anything is allocated (a header claiming a capacity of 10^12 is an error, not an allocation failure), and
//! every stored index, flag, reward, discount and priority is validated.
//!
//! Version 2 (this one) adds the per-env frame history of [`crate::FrameStackStorage`] (the recent frame ids
//! that new pushes are matched against), so a reloaded frame buffer stores and drops exactly the frames the
//! original would have; version 1 files are refused.
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::element::Element;
use crate::error::{ReplayError, Result};
use crate::storage::Storage;

/// Magic bytes at the start of every saved buffer.
pub const MAGIC: &[u8; 8] = b"BELLRPLY";
/// Current format version; a file of any other version is refused.
pub const FORMAT_VERSION: u32 = 2;
const END: &[u8; 4] = b"END!";
/// Largest push or frame counter a loaded file may hold (2^62: centuries of pushes at any rate, and far from
/// overflowing the counters).
pub(crate) const MAX_COUNT: u64 = 1 << 62;

/// Checks, before anything is allocated, that the `need` bytes (`None`: the size overflows) that a header's
/// sizes imply fit in the `avail` bytes left in the file; `claim` describes the header for the message.
pub(crate) fn check_fits(
    claim: impl FnOnce() -> String,
    need: Option<u64>,
    avail: u64,
) -> std::result::Result<(), String> {
    match need {
        Some(n) if n <= avail => Ok(()),
        Some(n) => Err(format!(
            "header claims {}, which needs {n} bytes, but only {avail} bytes remain in the file: it is truncated or \
             corrupt",
            claim()
        )),
        None => Err(format!("header claims {}, whose size overflows: corrupt file", claim())),
    }
}

/// Checks the reward and discount of each live slot (what `push` guarantees).
pub(crate) fn check_scalars_loaded(
    slots: impl Iterator<Item = usize>,
    rewards: &[f32],
    discounts: &[f32],
) -> std::result::Result<(), String> {
    for i in slots {
        if !rewards[i].is_finite() {
            return Err(format!("reward {} of slot {i} is not finite: corrupt file", rewards[i]));
        }
        if !(0.0..=1.0).contains(&discounts[i]) {
            return Err(format!("discount {} of slot {i} is outside [0, 1]: corrupt file", discounts[i]));
        }
    }
    Ok(())
}

pub(crate) fn io_msg(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { "file is truncated".to_string() } else { e.to_string() }
}
pub(crate) fn put_u64(w: &mut dyn Write, x: u64) -> std::io::Result<()> {
    w.write_all(&x.to_le_bytes())
}
pub(crate) fn put_usizes(w: &mut dyn Write, xs: &[usize]) -> std::io::Result<()> {
    xs.iter().try_for_each(|&x| put_u64(w, x as u64))
}
pub(crate) fn put_bools(w: &mut dyn Write, xs: &[bool]) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    for c in xs.chunks(8192) {
        for (b, &x) in buf.iter_mut().zip(c) {
            *b = x as u8;
        }
        w.write_all(&buf[..c.len()])?;
    }
    Ok(())
}
pub(crate) fn get_u64(r: &mut dyn Read) -> std::result::Result<u64, String> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(io_msg)?;
    Ok(u64::from_le_bytes(b))
}
pub(crate) fn get_usize(r: &mut dyn Read) -> std::result::Result<usize, String> {
    let x = get_u64(r)?;
    usize::try_from(x).map_err(|_| format!("value {x} does not fit in usize"))
}
pub(crate) fn get_bools(r: &mut dyn Read, out: &mut [bool]) -> std::result::Result<(), String> {
    let mut buf = [0u8; 8192];
    for c in out.chunks_mut(8192) {
        let b = &mut buf[..c.len()];
        r.read_exact(b).map_err(io_msg)?;
        for (x, &y) in c.iter_mut().zip(b.iter()) {
            if y > 1 {
                return Err(format!("flag byte {y} is not 0 or 1"));
            }
            *x = y == 1;
        }
    }
    Ok(())
}
fn put_str(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    w.write_all(&[s.len() as u8])?;
    w.write_all(s.as_bytes())
}
fn get_str(r: &mut dyn Read) -> std::result::Result<String, String> {
    let mut n = [0u8; 1];
    r.read_exact(&mut n).map_err(io_msg)?;
    let mut b = vec![0u8; n[0] as usize];
    r.read_exact(&mut b).map_err(io_msg)?;
    String::from_utf8(b).map_err(|_| "header string is not UTF-8".to_string())
}

/// Writes a buffer to `path` atomically: `body` fills a temporary file next to `path`, which is synced and renamed
/// over `path` only when complete.
pub(crate) fn save<S: Storage>(
    path: &Path,
    buffer_kind: &str,
    storage: &S,
    extra: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let io_err = |source| ReplayError::Io { path: path.to_path_buf(), source };
    let file_name = path
        .file_name()
        .ok_or_else(|| ReplayError::InvalidArgument(format!("save path '{}' has no file name", path.display())))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        put_str(&mut w, buffer_kind)?;
        put_str(&mut w, S::kind())?;
        w.write_all(&[S::Obs::CODE, S::Act::CODE])?;
        storage.write_state(&mut w)?;
        extra(&mut w)?;
        w.write_all(END)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

/// Reads a buffer written by [`save`]; `extra` reads the sampler state after the storage.
pub(crate) fn load<S: Storage, T>(
    path: &Path,
    buffer_kind: &str,
    extra: impl FnOnce(&mut dyn Read, S) -> std::result::Result<T, String>,
) -> Result<T> {
    let fmt = |msg: String| ReplayError::Format { path: path.to_path_buf(), msg };
    let io_err = |source| ReplayError::Io { path: path.to_path_buf(), source };
    let f = File::open(path).map_err(io_err)?;
    let file_len = f.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| fmt(io_msg(e)))?;
    if &magic != MAGIC {
        return Err(fmt(format!("not a Bellman replay file (magic {magic:?}, expected {MAGIC:?})")));
    }
    let mut v = [0u8; 4];
    r.read_exact(&mut v).map_err(|e| fmt(io_msg(e)))?;
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(fmt(format!("format version {version}, this build reads only version {FORMAT_VERSION}")));
    }
    let kind = get_str(&mut r).map_err(fmt)?;
    if kind != buffer_kind {
        return Err(fmt(format!("file holds a '{kind}' buffer, expected '{buffer_kind}'")));
    }
    let skind = get_str(&mut r).map_err(fmt)?;
    if skind != S::kind() {
        return Err(fmt(format!("file holds '{skind}' storage, expected '{}'", S::kind())));
    }
    let mut codes = [0u8; 2];
    r.read_exact(&mut codes).map_err(|e| fmt(io_msg(e)))?;
    if codes != [S::Obs::CODE, S::Act::CODE] {
        return Err(fmt(format!(
            "element codes {codes:?} (obs, action), expected [{}, {}] ({} observations, {} actions)",
            S::Obs::CODE,
            S::Act::CODE,
            S::Obs::NAME,
            S::Act::NAME
        )));
    }
    let header = (MAGIC.len() + 4 + 1 + kind.len() + 1 + skind.len() + 2) as u64;
    let storage = S::read_state(&mut r, file_len.saturating_sub(header)).map_err(fmt)?;
    let out = extra(&mut r, storage).map_err(fmt)?;
    let mut end = [0u8; 4];
    r.read_exact(&mut end).map_err(|e| fmt(io_msg(e)))?;
    if &end != END {
        return Err(fmt(format!("end marker {end:?} missing (expected {END:?}): corrupt file")));
    }
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(|e| fmt(e.to_string()))? != 0 {
        return Err(fmt("unexpected bytes after the end marker".to_string()));
    }
    Ok(out)
}
