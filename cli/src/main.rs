//! `difftopk`: train, evaluate and use linear classification heads on embedding files with the
//! differentiable top-k cross-entropy loss (Petersen et al., ICML 2022).
//!
//! Data flow: embedding and label files ([`difftopk_io`]) → a runtime-shaped linear head and
//! AdamW on dfdx tensors ([`difftopk_autodiff`]) → the loss's hand-written forward and backward
//! ([`difftopk_core`]) → a head file (safetensors), metrics (JSON) and a plot (SVG).
//! Every error is one line on stderr naming the file and the problem; the exit status is 2.

mod args;
mod data;
mod error;
mod eval;
mod fused;
mod head;
mod metrics;
mod outputs;
mod plot;
mod random;
mod train;

use clap::Parser;

fn configure_threads(threads: Option<usize>) -> Result<(), error::CliError> {
    if let Some(count) = threads {
        if count == 0 {
            return Err(error::CliError("--threads must be at least 1".into()));
        }
        // More threads than cores only adds switching (1000 on 2 cores: 40 s for a 0.1 s epoch).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = if count > cores {
            say!("note: --threads {count} is more than the {cores} cores; using {cores}");
            cores
        } else {
            count
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .build_global()
            .map_err(|e| error::CliError(format!("--threads: {e}")))?;
    }
    Ok(())
}

fn main() {
    let cli = args::Cli::parse();
    let result = match &cli.command {
        args::Command::Train(a) => configure_threads(a.threads).and_then(|()| train::run(a)),
        args::Command::Eval(a) => configure_threads(a.threads).and_then(|()| eval::run_eval(a)),
        args::Command::Predict(a) => {
            configure_threads(a.threads).and_then(|()| eval::run_predict(a))
        }
    };
    if let Err(error) = result {
        say!("error: {error}");
        std::process::exit(2);
    }
}
