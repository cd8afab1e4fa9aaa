//! Real directories and file contents for the file-transfer tests.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A fresh temporary directory holding `src` (what is sent), `dst` (where
/// it is received) and `outside` (for links that point out of `dst`); all
/// removed on drop.
pub struct Dirs {
    _tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub dst: PathBuf,
    pub outside: PathBuf,
}

/// Creates the three directories of a [`Dirs`], empty.
pub fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let [src, dst, outside] = ["src", "dst", "outside"].map(|d| tmp.path().join(d));
    for d in [&src, &dst, &outside] {
        fs::create_dir(d).unwrap();
    }
    Dirs {
        _tmp: tmp,
        src,
        dst,
        outside,
    }
}

/// Reproducible incompressible bytes (BLAKE3 in XOF mode), different for
/// each `salt`.
pub fn content(n: usize, salt: u8) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(&[salt])
        .finalize_xof()
        .fill(&mut v);
    v
}

/// Writes `data` to `src/name`; returns the path.
pub fn write_src(d: &Dirs, name: &str, data: &[u8]) -> PathBuf {
    let p = d.src.join(name);
    fs::write(&p, data).unwrap();
    p
}

/// One source file `file-{i}.bin` of each size, with `content(size, i)`.
pub fn sources(d: &Dirs, sizes: &[usize]) -> Vec<PathBuf> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| write_src(d, &format!("file-{i}.bin"), &content(n, i as u8)))
        .collect()
}

/// Whether two files hold the same bytes, compared in chunks (the files
/// can be hundreds of MiB).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (File::open(a).unwrap(), File::open(b).unwrap());
    if a.metadata().unwrap().len() != b.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return true;
        }
        b.read_exact(&mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
    }
}

/// Asserts that `dst` holds exactly `paths`, each under its own name and
/// byte-identical.
pub fn assert_received(d: &Dirs, paths: &[PathBuf]) {
    for p in paths {
        let got = d.dst.join(p.file_name().unwrap());
        assert!(same_file(p, &got), "{} differs", p.display());
    }
    let names = entries(&d.dst);
    assert_eq!(names.len(), paths.len(), "stray files: {names:?}");
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
