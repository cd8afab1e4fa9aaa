//! Folders through the wormhole arrive as zips: `files::zip::unpack` lays
//! one out through the store, and a hostile zip (the bug classes other
//! tools shipped: zip slip, absolute paths, links, duplicates, bombs) gets
//! a refusal, never a byte outside the
//! destination, never a file under its final name that is not whole.
#![cfg(unix)]

use std::fs::{self, File};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use echoxfer::files::zip::{pack, unpack, UnpackLimits, Unpacked};
use echoxfer::files::{walk, Store};
use echoxfer::xfer::{Mtime, SafeName};
use echoxfer::TransferConfig;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const ROOM: UnpackLimits = UnpackLimits {
    max_entries: 1000,
    max_bytes: 1 << 30,
};
const NOW: Mtime = Mtime {
    secs: 1_700_000_000,
    nanos: 0,
};

/// A zip made entry by entry: `(name, Some(content))` a file, `(name, None)` a directory.
fn zip_of(entries: &[(&str, Option<&[u8]>)]) -> File {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, content) in entries {
        match content {
            Some(bytes) => {
                zip.start_file(*name, options).unwrap();
                zip.write_all(bytes).unwrap();
            }
            None => zip.add_directory(*name, options).unwrap(),
        }
    }
    spooled(zip.finish().unwrap().into_inner())
}

fn spooled(bytes: Vec<u8>) -> File {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file
}

fn unpack_into(dir: &Path, zipped: File, limits: UnpackLimits) -> std::io::Result<Unpacked> {
    let store = Store::new(dir, false).unwrap();
    let name = SafeName::new(b"got", 255).unwrap();
    unpack(
        zipped,
        &store,
        &name,
        limits,
        &TransferConfig::default().path_limits(),
        NOW,
    )
}

/// Every path under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_packed_folder_unpacks_identical_with_its_modes() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("tree");
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.bin"), vec![7u8; 300_000]).unwrap();
    fs::write(root.join("sub/ü b.txt"), b"hi\n").unwrap();
    fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    fs::set_permissions(root.join("a.bin"), fs::Permissions::from_mode(0o750)).unwrap();
    let found = walk(
        std::slice::from_ref(&root),
        &TransferConfig::default().path_limits(),
    )
    .unwrap();
    let (zipped, packed) = pack(&found, tempfile::tempfile().unwrap()).unwrap();
    assert_eq!((packed.numbytes, packed.numfiles), (300_003, 5));
    assert_eq!(zipped.metadata().unwrap().len(), packed.zipsize);

    let dst = tempfile::tempdir().unwrap();
    let done = unpack_into(dst.path(), zipped, ROOM).unwrap();
    assert_eq!((done.files, done.dirs, done.bytes), (3, 2, 300_003));
    let got = dst.path().join("got");
    assert_eq!(fs::read(got.join("a.bin")).unwrap(), vec![7u8; 300_000]);
    assert_eq!(fs::read(got.join("sub/ü b.txt")).unwrap(), b"hi\n");
    assert_eq!(fs::metadata(got.join("sub/deeper/empty")).unwrap().len(), 0);
    let mode = fs::metadata(got.join("a.bin"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode & 0o700,
        0o700,
        "the owner's bits travel (the umask may narrow the rest): {mode:o}"
    );
    assert_eq!(mode & 0o007, 0, "no bit the sender did not have: {mode:o}");
}

/// Each hostile entry name is refused before anything lands outside
/// `got`, and nothing is written under it either.
#[test]
fn hostile_names_are_refused_and_nothing_lands_outside() {
    let cases: &[(&str, &str)] = &[
        ("../evil", "a parent component (zip slip)"),
        ("sub/../../evil", "a parent component deeper down"),
        ("/etc/evil", "an absolute path"),
        ("..\\evil", "a backslash"),
        ("sub/./evil", "a dot component"),
        ("sub//evil", "an empty component"),
        ("evil\u{1b}[2J", "a control character"),
    ];
    for (name, what) in cases {
        let dst = tempfile::tempdir().unwrap();
        let outside = dst.path().join("evil");
        let result = unpack_into(dst.path(), zip_of(&[(name, Some(b"x"))]), ROOM);
        let error = result.expect_err(what);
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::InvalidData,
            "{what}: {error}"
        );
        assert!(!outside.exists(), "{what}: something landed outside");
        assert_eq!(
            listing(dst.path()),
            ["got"],
            "{what}: only the empty folder"
        );
    }
}

#[test]
fn a_name_twice_is_refused_and_the_first_stays_whole() {
    let dst = tempfile::tempdir().unwrap();
    let zipped = zip_of(&[("dup", Some(b"first")), ("dup/", None)]);
    let error = unpack_into(dst.path(), zipped, ROOM).unwrap_err();
    assert!(error.to_string().contains("twice"), "{error}");
    assert_eq!(fs::read(dst.path().join("got/dup")).unwrap(), b"first");
}

#[test]
fn links_in_the_zip_are_left_out_and_never_made() {
    let dst = tempfile::tempdir().unwrap();
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    zip.add_symlink("passwd", "/etc/passwd", options).unwrap();
    zip.start_file("real", options).unwrap();
    zip.write_all(b"ok").unwrap();
    let zipped = spooled(zip.finish().unwrap().into_inner());
    let done = unpack_into(dst.path(), zipped, ROOM).unwrap();
    assert_eq!(done.skipped, ["got/passwd"]);
    assert_eq!(listing(dst.path()), ["got", "got/real"]);
}

#[test]
fn a_link_in_the_destination_is_never_followed() {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir(dst.path().join("got")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dst.path().join("got/sub")).unwrap();
    let error = unpack_into(dst.path(), zip_of(&[("sub/planted", Some(b"x"))]), ROOM).unwrap_err();
    assert!(
        !outside.path().join("planted").exists(),
        "written through the link: {error}"
    );
}

#[test]
fn an_existing_file_is_kept_without_overwrite() {
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir(dst.path().join("got")).unwrap();
    fs::write(dst.path().join("got/mine"), b"keep me").unwrap();
    let error = unpack_into(dst.path(), zip_of(&[("mine", Some(b"replace"))]), ROOM).unwrap_err();
    assert!(error.to_string().contains("mine"), "{error}");
    assert_eq!(fs::read(dst.path().join("got/mine")).unwrap(), b"keep me");
}

#[test]
fn a_zip_that_declares_more_than_allowed_is_refused_before_any_byte() {
    let dst = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 4 << 20];
    let zipped = zip_of(&[("a", Some(&zeros[..])), ("b", Some(&zeros[..]))]);
    assert!(
        zipped.metadata().unwrap().len() < 64 << 10,
        "a small zip that inflates big"
    );
    let limits = UnpackLimits {
        max_entries: 1000,
        max_bytes: 5 << 20,
    };
    let error = unpack_into(dst.path(), zipped, limits).unwrap_err();
    assert!(error.to_string().contains("would unpack to"), "{error}");
    assert!(
        listing(dst.path()).is_empty(),
        "nothing made: {:?}",
        listing(dst.path())
    );
}

#[test]
fn too_many_entries_are_refused_before_any_byte() {
    let dst = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, Option<&[u8]>)> =
        names.iter().map(|n| (n.as_str(), Some(&b""[..]))).collect();
    let limits = UnpackLimits {
        max_entries: 10,
        max_bytes: 1 << 20,
    };
    let error = unpack_into(dst.path(), zip_of(&entries), limits).unwrap_err();
    assert!(error.to_string().contains("entries"), "{error}");
    assert!(listing(dst.path()).is_empty());
}

/// A zip whose headers declare 1000 bytes for an entry that inflates to
/// 100,000: never more than declared is written, and the entry never gets
/// its final name.
#[test]
fn an_entry_that_inflates_past_its_declared_size_never_lands() {
    let zeros = vec![0u8; 100_000];
    let mut bytes = Vec::new();
    zip_of(&[("z", Some(&zeros[..]))])
        .read_to_end(&mut bytes)
        .unwrap();
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(30) {
        let field = match bytes[at..at + 4] {
            [0x50, 0x4b, 0x03, 0x04] => at + 22, // local header: uncompressed size
            [0x50, 0x4b, 0x01, 0x02] => at + 24, // central directory: uncompressed size
            _ => continue,
        };
        bytes[field..field + 4].copy_from_slice(&1000u32.to_le_bytes());
        patched += 1;
    }
    assert_eq!(patched, 2, "both headers found");
    let dst = tempfile::tempdir().unwrap();
    let result = unpack_into(dst.path(), spooled(bytes), ROOM);
    assert!(result.is_err(), "{result:?}");
    assert!(
        !dst.path().join("got/z").exists(),
        "an entry larger than declared got its name"
    );
}

#[test]
fn garbage_instead_of_a_zip_is_a_clear_refusal() {
    let dst = tempfile::tempdir().unwrap();
    let error = unpack_into(dst.path(), spooled(b"not a zip at all".to_vec()), ROOM).unwrap_err();
    assert!(error.to_string().contains("not a valid zip"), "{error}");
    assert!(listing(dst.path()).is_empty());
}
