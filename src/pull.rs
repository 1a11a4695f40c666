//! The job itself, top to bottom: a reference becomes a manifest, the manifest becomes
//! descriptors, the descriptors become verified files.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cli::{Args, Output};
use crate::digest::Digest;
use crate::download::{self, Job, Outcome};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::{Reference, Repository, Target};
use crate::registry::Client;
use crate::store;

pub fn pull(client: &mut Client, reference: &Reference, args: &Args) -> Result<()> {
    match reference.target() {
        Target::Blob(digest) => fetch_blob(client, reference.repository(), digest, args),
        Target::Tag(tag) => pull_package(client, reference.repository(), tag, args),
    }
}

/// `oras blob fetch`: one blob, to a file named after the repository, or as `-o` says.
fn fetch_blob(client: &mut Client, repo: &Repository, digest: &Digest, args: &Args) -> Result<()> {
    let job = Job { repo, digest, size: None, quiet: args.quiet };
    let name = repo.last_segment();
    let target = match &args.output {
        Some(Output::Stdout) => {
            let n = download::to_stdout(client, &job)?;
            status(args, Path::new("(stdout)"), Outcome::Written(n), digest);
            return Ok(());
        }
        Some(Output::Path(path)) if store::names_directory(path) => path.join(name),
        Some(Output::Path(path)) => path.clone(),
        None => PathBuf::from(name),
    };
    let outcome = download::to_path(client, &job, &target)?;
    status(args, &target, outcome, digest);
    Ok(())
}

/// `oras pull`: every layer with a title, written under that title in the output directory.
fn pull_package(client: &mut Client, repo: &Repository, tag: &str, args: &Args) -> Result<()> {
    let (mut manifest, _) = client.manifest(repo, tag)?;
    if let Manifest::Index { manifests } = &manifest {
        let chosen = args.platform.select(manifests)?.digest.to_string();
        manifest = client.manifest(repo, &chosen)?.0;
    }
    let Manifest::Image { layers } = manifest else {
        return Err(Error::BadManifest("an index whose entry is another index".into()));
    };

    let root = match &args.output {
        Some(Output::Path(path)) => path.as_path(),
        _ => Path::new("."),
    };
    fs::create_dir_all(root).map_err(Error::file(root))?;
    // Every path is decided before the first download, so one bad title writes nothing.
    let files = plan(root, &layers, args)?;
    for (path, layer) in files {
        let job = Job { repo, digest: &layer.digest, size: Some(layer.size), quiet: args.quiet };
        let outcome = download::to_path(client, &job, &path)
            .map_err(|e| Error::Layer { title: layer.title.clone().unwrap_or_default(), source: Box::new(e) })?;
        status(args, &path, outcome, &layer.digest);
    }
    Ok(())
}

fn plan<'a>(root: &Path, layers: &'a [Descriptor], args: &Args) -> Result<Vec<(PathBuf, &'a Descriptor)>> {
    let mut files = Vec::new();
    let mut titles = HashSet::new();
    for layer in layers {
        let Some(title) = &layer.title else {
            if !args.quiet {
                eprintln!("skipped layer {} ({} bytes): it has no title", layer.digest, layer.size);
            }
            continue;
        };
        if !titles.insert(title.as_str()) {
            return Err(Error::DuplicateTitle(title.clone()));
        }
        files.push((store::safe_path(root, title)?, layer));
    }
    if files.is_empty() {
        return Err(Error::BadManifest(
            "no layer has an org.opencontainers.image.title: there is no file to write".into(),
        ));
    }
    Ok(files)
}

/// One line per file, on stderr: stdout is for data only.
fn status(args: &Args, path: &Path, outcome: Outcome, digest: &Digest) {
    if args.quiet {
        return;
    }
    let path = path.strip_prefix(".").unwrap_or(path).display();
    match outcome {
        Outcome::Written(n) => eprintln!("{path}  {}  sha256:{}", human_size(n), digest.short()),
        Outcome::UpToDate(n) => eprintln!("{path}  {}  sha256:{}  up to date", human_size(n), digest.short()),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_ls_h() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }
}
