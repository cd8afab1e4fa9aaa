//! The demo's folder step: a generated tree (nested and empty directories,
//! files of many sizes, permission bits, times to the nanosecond) sent
//! over loopback and compared entry by entry; then the same folder again,
//! which must find every file up to date and move no data.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use echoxfer::files::Totals;

use crate::auth::Auth;
use crate::net::CmdResult;

/// Files in the demo's folder.
const FILES: u32 = 300;

/// Sends a generated folder twice and checks both runs.
pub fn folder_demo(auth: &Auth) -> CmdResult {
    let tmp = tempfile::Builder::new().prefix("echoxfer-demo").tempdir()?;
    let (src, dst) = (tmp.path().join("send"), tmp.path().join("receive"));
    fs::create_dir(&dst)?;
    let tree = src.join("album");
    let bytes = generate(&tree)?;
    let (sent, received, took) = transfer(&tree, &dst, auth)?;
    if sent.saved != u64::from(FILES) || received.saved != u64::from(FILES) {
        return Err(format!("folder: {} of {FILES} files saved", received.saved).into());
    }
    compare(&tree, &dst.join("album"))?;
    println!(
        "folder: {FILES} files ({bytes} bytes) in {} directories sent intact, with their \
         permission bits and times to the nanosecond, in {:.3} s",
        received.dirs,
        took.as_secs_f64()
    );
    let (_, again, took) = transfer(&tree, &dst, auth)?;
    if again.up_to_date != u64::from(FILES) || again.bytes_moved != 0 {
        return Err(format!("folder: the second run was not a no-op: {again:?}").into());
    }
    println!(
        "folder: sent again, all {FILES} files were up to date: 0 bytes moved in {:.3} s",
        took.as_secs_f64()
    );
    Ok(())
}

/// Writes the demo's tree under `root`; returns its content bytes.
fn generate(root: &Path) -> std::io::Result<u64> {
    fs::create_dir_all(root.join("empty"))?;
    let mut xof = blake3::Hasher::new_derive_key("echoxfer demo folder").finalize_xof();
    let mut total = 0;
    for i in 0..FILES {
        let dir = root.join(["2023", "2024", "2024/summer"][(i % 3) as usize]);
        fs::create_dir_all(&dir)?;
        let size = if i == 0 {
            200_000
        } else {
            (i as usize * 37) % 9000
        };
        let mut data = vec![0u8; size];
        xof.fill(&mut data);
        let path = dir.join(format!("photo-{i:03}.jpg"));
        fs::write(&path, &data)?;
        let mode = [0o644, 0o600, 0o755][(i % 3) as usize];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        let time = UNIX_EPOCH + Duration::new(1_700_000_000 + u64::from(i), i * 1_001);
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(time)?;
        total += size as u64;
    }
    Ok(total)
}

/// One session: `tree` sent to a receiver thread saving into `dst`.
fn transfer(tree: &Path, dst: &Path, auth: &Auth) -> CmdResult<(Totals, Totals, Duration)> {
    let session = super::transfer(tree, dst, auth)?;
    Ok((
        session.sent.totals(),
        session.received.totals(),
        session.elapsed,
    ))
}

/// Every entry under `a` is under `b` with the same content, permission
/// bits (as masked by the umask) and modification time, and nothing else.
fn compare(a: &Path, b: &Path) -> CmdResult {
    let umask = umask();
    let (want, got) = (entries(a)?, entries(b)?);
    if want.len() != got.len() {
        return Err(format!(
            "folder: {} entries sent, {} received",
            want.len(),
            got.len()
        )
        .into());
    }
    for rel in &want {
        let (x, y) = (fs::metadata(a.join(rel))?, fs::metadata(b.join(rel))?);
        let same_content = x.is_dir() || fs::read(a.join(rel))? == fs::read(b.join(rel))?;
        let same_mode = x.mode() & 0o777 & !umask == y.mode() & 0o777;
        let same_time = (x.mtime(), x.mtime_nsec()) == (y.mtime(), y.mtime_nsec());
        if !(same_content && same_mode && same_time && x.is_dir() == y.is_dir()) {
            return Err(format!("folder: {} differs", rel.display()).into());
        }
    }
    Ok(())
}

/// The relative paths of everything under `root`, sorted.
fn entries(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}
