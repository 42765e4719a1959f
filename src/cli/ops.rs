//! `synth-city ops`: deployment chores an operator runs by hand. `ops redis-acl` prints the
//! Redis ACL file of one deployment (`engine::acl`: one user per role, only the deployment's
//! keys and the commands the role sends).
//!
//! What it does not do: connect to Redis or load the file (an administrator does, with
//! `redis-server --aclfile FILE` or `ACL LOAD`), or keep the generated passwords anywhere but
//! the one stderr message that shows them.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use engine::acl::{Password, Role};
use sha2::Digest;

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Print the Redis ACL file (aclfile format) of this deployment's users: one per role,
    /// only the keys of the prefix (--prefix / SYNTH_CITY_PREFIX) and the commands the role
    /// needs. Passwords come from the flags or their variables; a role without one gets a
    /// generated password, printed once on stderr. The file holds only SHA-256 hashes.
    RedisAcl(RedisAclArgs),
}

#[derive(Debug, Args)]
pub struct RedisAclArgs {
    /// The roles to print users for, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "worker,scheduler,bridge,operator"
    )]
    users: Vec<String>,
    /// The worker user's password [default: generated].
    #[arg(long, env = "SYNTH_REDIS_WORKER_PASSWORD", hide_env_values = true)]
    worker_password: Option<String>,
    /// The scheduler user's password [default: generated].
    #[arg(long, env = "SYNTH_REDIS_SCHEDULER_PASSWORD", hide_env_values = true)]
    scheduler_password: Option<String>,
    /// The bridge user's password [default: generated].
    #[arg(long, env = "SYNTH_REDIS_BRIDGE_PASSWORD", hide_env_values = true)]
    bridge_password: Option<String>,
    /// The operator user's password [default: generated].
    #[arg(long, env = "SYNTH_REDIS_OPERATOR_PASSWORD", hide_env_values = true)]
    operator_password: Option<String>,
    /// Name the users `<prefix>-<role>` (e.g. `sc-worker`), so that the files of several
    /// deployments sharing one Redis can be joined into one (pass --keep-default-user to all
    /// but one).
    #[arg(long)]
    prefixed_names: bool,
    /// Leave out `user default off`: without this flag the file turns off the `default` user
    /// (which an unauthenticated connection is); add your own administrator user to it.
    #[arg(long)]
    keep_default_user: bool,
}

impl RedisAclArgs {
    /// The password given for `role`, and the flag and variable that give it.
    fn given(&self, role: Role) -> (Option<&str>, String, String) {
        let p = match role {
            Role::Worker => &self.worker_password,
            Role::Scheduler => &self.scheduler_password,
            Role::Bridge => &self.bridge_password,
            Role::Operator => &self.operator_password,
        };
        let upper = role.name().to_ascii_uppercase();
        (
            p.as_deref(),
            format!("--{}-password", role.name()),
            format!("SYNTH_REDIS_{upper}_PASSWORD"),
        )
    }
}

pub async fn run(prefix: Option<String>, c: OpsCommand) -> anyhow::Result<()> {
    match c {
        OpsCommand::RedisAcl(a) => redis_acl(prefix, a),
    }
}

fn redis_acl(prefix: Option<String>, a: RedisAclArgs) -> anyhow::Result<()> {
    let prefix = engine::config::prefix(prefix.as_deref()).map_err(anyhow::Error::msg)?;
    let mut roles = Vec::new();
    for u in &a.users {
        let Some(role) = Role::parse(u) else {
            bail!("--users: unknown role {u:?}; the roles are worker, scheduler, bridge, operator");
        };
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        bail!("--users: name at least one of worker, scheduler, bridge, operator");
    }
    let mut users = Vec::new();
    let mut generated = Vec::new();
    for role in roles {
        let name = if a.prefixed_names {
            format!("{prefix}-{}", role.name())
        } else {
            role.name().to_string()
        };
        let (given, flag, var) = a.given(role);
        let password = match given {
            Some(p) => {
                if p.len() < 16 || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!(
                        "{flag} / {var}: a password must be at least 16 characters with no \
                         spaces; leave it unset to have one generated"
                    );
                }
                p.to_string()
            }
            None => {
                let bytes: [u8; 24] = rand::random();
                let p = hex::encode(bytes);
                generated.push((name.clone(), p.clone()));
                p
            }
        };
        let hash = hex::encode(sha2::Sha256::digest(password.as_bytes()));
        users.push((name, role, Password::Sha256Hex(hash)));
    }
    print!(
        "{}",
        engine::acl::acl_file(&prefix, &users, a.keep_default_user)
    );
    for (name, p) in &generated {
        eprintln!(
            "generated password for Redis user {name} (shown only now; the file holds its \
             SHA-256): {p}"
        );
    }
    std::io::Write::flush(&mut std::io::stdout()).context("writing the ACL file")?;
    Ok(())
}
