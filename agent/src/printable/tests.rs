use super::*;
use crate::octoprint::job_file::JobFile;
use farm_protocol::gcode::analyze;

const BGCODE: &[u8] =
    include_bytes!("../../../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode");
/// libbgcode's own text form of [`BGCODE`] (`from_binary_to_ascii`), gzipped.
const REFERENCE: &[u8] =
    include_bytes!("../../../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.ref.gcode.gz");

fn reference() -> Vec<u8> {
    let mut out = vec![];
    flate2::read::GzDecoder::new(REFERENCE)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// The real `.bgcode` as the fetcher caches it: `<sha256>.gcode`.
fn cached(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{}.gcode", "cd".repeat(32)));
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn prusalink_gets_the_bgcode_as_is_and_every_other_back_end_its_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = cached(dir.path(), BGCODE);
    assert_eq!(
        prepare("prusalink", job.clone(), None),
        Ok((job.clone(), None))
    );
    let text_file = beside(&job, "ascii");
    assert!(!text_file.exists(), "nothing decoded for PrusaLink");
    for backend in ["octoprint", "moonraker", "serial", "bambu", "sim"] {
        assert_eq!(
            prepare(backend, job.clone(), None),
            Ok((text_file.clone(), None)),
            "{backend}"
        );
    }
    let text = std::fs::read(&text_file).expect("read");
    assert!(
        text == reference(),
        "decoded to libbgcode's text, byte for byte"
    );
    assert!(!text_file.with_extension("part").exists());
    // A plain G-code job file goes as it is everywhere.
    let plain = dir.path().join(format!("{}.gcode", "ef".repeat(32)));
    std::fs::write(&plain, crate::test_gcode::sample(3)).expect("write");
    assert_eq!(prepare("serial", plain.clone(), None), Ok((plain, None)));
}

#[tokio::test]
async fn the_decoded_job_is_billed_by_its_text_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = cached(dir.path(), BGCODE);
    let (path, _) = for_backend("octoprint", job, None).await.expect("decoded");
    let text = reference();
    // OctoPrint (like Moonraker and the serial link) reports positions in the text it was
    // sent, so the file it is billed from is that text, not the binary.
    let mut file = JobFile::open(&path).await.expect("index");
    assert_eq!(file.size, text.len() as u64);
    assert_ne!(file.size, BGCODE.len() as u64);
    let whole = bgcode::analyze_with(BGCODE, Default::default())
        .expect("analyse the binary")
        .filament_mm;
    assert_eq!(file.whole(), whole);
    assert_eq!(file.at(file.size).await, whole);
    // At line ends through the file: the filament of the text up to there.
    let ends: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for k in 1..8 {
        let at = ends[ends.len() * k / 8];
        let want = analyze(&text[..at])
            .expect("analyse the prefix")
            .filament_mm;
        let got = file.at(at as u64).await;
        assert!(
            got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-9),
            "at text byte {at}: billed {got:?}, the text up to there has {want:?}"
        );
    }
}

#[test]
fn a_cut_short_bgcode_is_refused_with_what_to_do_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Cut inside the last G-code block: the decoder fails part way through the text.
    let job = cached(dir.path(), &BGCODE[..BGCODE.len() - 10]);
    let e = prepare("serial", job.clone(), None).expect_err("truncated");
    assert!(
        e.contains("binary G-code") && e.contains("upload the file again"),
        "{e}"
    );
    let text_file = beside(&job, "ascii");
    assert!(!text_file.exists() && !text_file.with_extension("part").exists());
}
