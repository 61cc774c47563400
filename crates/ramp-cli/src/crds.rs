//! `ramp crds`: prints the CRDs Ramp serves, or writes them as one file per kind (how `crds/` is
//! regenerated after a change to the types).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CrdsArgs {
    /// Write one file per kind into this directory instead of printing a YAML stream.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

pub fn run(args: &CrdsArgs) -> anyhow::Result<ExitCode> {
    match &args.write {
        None => {
            print!(
                "{}",
                ramp_api::crd::all_to_yaml().context("serializing the CRDs")?
            );
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for file in ramp_api::crd::files() {
                let path = dir.join(file.file_name);
                let yaml = ramp_api::crd::to_yaml(&file.crd)
                    .with_context(|| format!("serializing {}", file.crd.spec.names.kind))?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
