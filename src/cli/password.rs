//! Reading a new password without it ever touching argv: one line from stdin with
//! `--password-stdin`, or twice from the terminal without echo.

use std::io::{BufRead, IsTerminal};

use super::UsageError;

pub fn read(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        return Ok(password.to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "stdin is not a terminal: pass --password-stdin to read the password from stdin".into(),
        )
        .into());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(first)
}
