//! One blob into one place: a file (staged, then renamed), standard output, or a FIFO or
//! device the user named; and `oras blob fetch`, which is that for a reference.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{Mode, Output};
use crate::content::digest::Digest;
use crate::deliver::{settle, Deliver, Sink, Stream};
use crate::disk::partial::{self, Partial, Stage};
use crate::disk::paths;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::report::{File, Report, Status};
use crate::settings::Job;
use crate::sys;

/// `oras blob fetch`: one blob, to a file named after the reference, or as `-o` says.
pub(super) fn fetch_blob(
    d: &mut Deliver,
    reference: &Reference,
    digest: &Digest,
    job: &Job,
    fallback: bool,
    report: &mut Report,
) -> Result<()> {
    let name = reference.file_name();
    if job.mode == Mode::Fill {
        let size = d.fill(digest, None, &name)?;
        report.files.push(File::cached(None, size, digest, None));
        return Ok(());
    }
    // The path, and the directory it must stay in when ocidl chose its name.
    let target = match &job.output {
        Some(Output::Stdout) => None,
        Some(Output::Path(dir)) if paths::names_directory(dir) => {
            Some((dir.join(&name), Some(dir.as_path())))
        }
        Some(Output::Path(path)) => Some((path.clone(), None)),
        None => Some((PathBuf::from(&name), Some(Path::new(".")))),
    };
    let (size, status) = match &target {
        None => (stream(d, digest, None, &name, None)?, Status::Written),
        // A FIFO, a device, `/dev/stdout` the user named with `-o`: written into, never
        // replaced. Under a name ocidl chose, whatever is there is replaced, not fed.
        Some((path, None)) if paths::is_special(path) => {
            (stream(d, digest, None, &name, Some(path))?, Status::Written)
        }
        Some((path, root)) => {
            let mut stage = Stage::default();
            let into = into_file(
                d,
                path,
                *root,
                digest,
                None,
                &name,
                &[],
                fallback,
                &mut stage,
            );
            let status = into?;
            stage.commit()?;
            status
        }
    };
    let target = target.map(|(path, _)| path);
    report.record(d.progress, None, target, digest, None, size, status);
    Ok(())
}

/// One blob to a stream: standard output, or the FIFO or device at `path`.
pub(super) fn stream(
    d: &mut Deliver,
    digest: &Digest,
    size: Option<u64>,
    name: &str,
    path: Option<&Path>,
) -> Result<u64> {
    let Some(path) = path else {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let mut sink = Sink::Stream(Stream::stdout(&mut out));
        return d.blob(digest, size, name, &mut sink);
    };
    let mut out = open_stream(path, d.patience())?;
    let mut sink = Sink::Stream(Stream::named(&mut out, path));
    d.blob(digest, size, name, &mut sink)
}

/// Opens the FIFO or device at `path` for writing, waiting for a FIFO's reader `patience` at
/// most (an open that blocks would wait for ever), and only when it is still not a regular
/// file once open.
fn open_stream(path: &Path, patience: Duration) -> Result<fs::File> {
    const ENXIO: i32 = 6;
    let until = Instant::now() + patience;
    let file = loop {
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(sys::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => break file,
            // A FIFO no one reads yet.
            Err(e) if e.raw_os_error() == Some(ENXIO) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) if e.raw_os_error() == Some(ENXIO) => {
                return Err(Error::File {
                    path: path.to_path_buf(),
                    cause: io::Error::other(format!("no one read it for {} s", patience.as_secs())),
                })
            }
            Err(e) => return Err(Error::file(path)(e)),
        }
    };
    if file.metadata().map_err(Error::file(path))?.is_file() {
        return Err(Error::File {
            path: path.to_path_buf(),
            cause: io::Error::other("became a regular file"),
        });
    }
    sys::set_nonblocking(&file, false).map_err(Error::file(path))?;
    Ok(file)
}

/// The temporary file for a blob at `path`, or the size of what is there when it already
/// holds the blob. `root`: the directory it must stay inside, when ocidl chose the name.
/// `watch`: the package's other temporary files, which another ocidl may be filling (see
/// `Partial::open`).
pub(super) fn open_file(
    d: &mut Deliver,
    path: &Path,
    root: Option<&Path>,
    digest: &Digest,
    size: Option<u64>,
    watch: &[PathBuf],
) -> Result<std::result::Result<u64, Partial>> {
    // Checked before anything is created (a read-only directory with the right file in it
    // is fine), and again once the temporary file is ours: another ocidl may have finished
    // it while we waited.
    if let Some(n) = partial::holds(path, digest, size)? {
        return Ok(Ok(n));
    }
    let partial = Partial::open(path, digest, root, watch, d.patience(), d.progress)?;
    if let Some(n) = partial::holds(path, digest, size)? {
        partial.discard();
        return Ok(Ok(n));
    }
    Ok(Err(partial))
}

/// One blob into a file at `path` (`open_file`, which says what `watch` is), delivered into
/// its temporary file and staged in `stage`. `fallback`: another source comes next, so a
/// failed file is not kept for a later run.
#[allow(clippy::too_many_arguments)]
pub(super) fn into_file(
    d: &mut Deliver,
    path: &Path,
    root: Option<&Path>,
    digest: &Digest,
    size: Option<u64>,
    name: &str,
    watch: &[PathBuf],
    fallback: bool,
    stage: &mut Stage,
) -> Result<(u64, Status)> {
    let mut partial = match open_file(d, path, root, digest, size, watch)? {
        Ok(n) => return Ok((n, Status::UpToDate)),
        Err(partial) => partial,
    };
    let delivered = d.blob(digest, size, name, &mut Sink::File(&mut partial));
    let settled = match delivered {
        Err(e) if fallback => {
            partial.discard();
            Err(e)
        }
        delivered => settle(partial, delivered),
    };
    let (staged, n) = settled?;
    stage.push(staged);
    Ok((n, Status::Written))
}
