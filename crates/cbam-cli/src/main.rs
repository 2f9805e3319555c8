//! `cbam`: the command-line edge of cbam-edge. Each subcommand lives in its own module
//! (`cmd_<name>.rs`, with its clap `Args` and a `run`); this file only dispatches and turns
//! errors into a message and a non-zero exit code.

#[macro_use]
mod stdout;

mod camera;
mod cmd_attention;
mod cmd_eval;
mod cmd_inspect;
mod cmd_prune;
mod cmd_quantize;
mod cmd_run;
mod firmware_build;
mod flash;
mod frames;
mod interrupt;
mod layer_threads;
mod limits;
mod model_file;
mod norm;
mod outputs;
mod overlay;
mod packed_weights;
mod parallel;
mod plots;
mod progress;
mod spin_pool;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cbam",
    version,
    about = "Quantize CNNs with CBAM attention to int8 and run them on microcontrollers and the Pi",
    after_help = "\
Examples:
  cbam inspect models/example.onnx
  cbam quantize models/example.onnx --calib calib.npy --out example.cbam --qdq example.int8.onnx
  cbam eval example.cbam --data t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz \\
      --reference models/example.onnx

Run `cbam <command> --help` for each command's options and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Inspect(cmd_inspect::InspectArgs),
    Quantize(cmd_quantize::QuantizeArgs),
    Eval(cmd_eval::EvalArgs),
    Prune(cmd_prune::PruneArgs),
    Flash(flash::FlashArgs),
    Run(cmd_run::RunArgs),
    Attention(cmd_attention::AttentionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    interrupt::install();
    quiet_tract_panics();
    let result = match &cli.command {
        Command::Inspect(args) => cmd_inspect::run(args),
        Command::Quantize(args) => cmd_quantize::run(args),
        Command::Eval(args) => cmd_eval::run(args),
        Command::Prune(args) => cmd_prune::run(args),
        Command::Flash(args) => flash::run(args),
        Command::Run(args) => cmd_run::run(args),
        Command::Attention(args) => cmd_attention::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output has all it wanted (`cbam inspect M | head -1`).
        Err(error) if stdout::is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("error: {error}");
            for cause in error.chain().skip(1) {
                errln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A panic inside tract becomes an error that names the model (`float_run`), so its
/// backtrace message would only confuse; every other panic is still printed.
fn quiet_tract_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !cbam_compiler::float_run::in_tract() {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example_in_its_help() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("cbam "),
                "`cbam {name} --help` shows no example:\n{help}"
            );
        }
    }
}
