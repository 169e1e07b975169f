//! `patchwatch completions SHELL` and `patchwatch man`: generated from the command definitions,
//! so they never drift from the real options.

use std::io::Write;

use anyhow::Result;

/// Options of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> Result<i32> {
    // clap_complete panics on a write error: generate into memory, then write, so that a
    // reader that stops early (`| head`) ends the command quietly like any other.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "patchwatch", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(0)
}

/// Writes the man page (roff) of `cmd` and of each subcommand to stdout.
pub fn man(cmd: clap::Command) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("patchwatch-{}", sub.get_name());
        let sub = sub.clone().name(name);
        clap_mangen::Man::new(sub).render(&mut out)?;
    }
    out.flush()?;
    Ok(0)
}
