//! The command line, as clap reads it. Which admin request each command makes is in
//! `request.rs`.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "keygate",
    version,
    about = "The access layer of a multi-tenant HTTP API",
    after_help = "Tenant, key and signing-key commands work through a running keygate's admin API \
                  (--admin-url), or on the store itself with --store."
)]
pub(crate) struct Cli {
    /// Configuration file (TOML). Every setting has a default; KEYGATE_<SECTION>_<KEY> overrides.
    #[arg(long, global = true, env = "KEYGATE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The admin API the tenant, key and signing-key commands go through. Default:
    /// http://<server.admin_listen>. The token is server.admin_token (KEYGATE_SERVER_ADMIN_TOKEN).
    /// http:// only to a loopback address: elsewhere the token needs https://.
    #[arg(long, global = true, hide = true, env = "KEYGATE_ADMIN_URL", value_name = "URL")]
    pub(crate) admin_url: Option<String>,
    /// PEM certificates of the authority that signed an https:// admin URL's certificate,
    /// trusted besides the system's roots.
    #[arg(long, global = true, hide = true, env = "KEYGATE_ADMIN_CA_FILE", value_name = "FILE")]
    pub(crate) admin_ca_file: Option<PathBuf>,
    /// Work on the configured store directly, not through the admin API: for bootstrap and
    /// recovery. The store must exist (`keygate migrate` creates it).
    #[arg(long, global = true, hide = true)]
    pub(crate) store: bool,
    /// How answers are printed. Default: a table on a terminal, JSON otherwise.
    #[arg(long, short = 'o', global = true, hide = true, value_enum)]
    pub(crate) output: Option<Output>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The admin commands' own flags. They are global (`keygate --store tenant list` and `keygate
/// tenant list --store` both work) but hidden from every command's option list, which clap
/// would fill with them, `serve` and `completions` included; the admin commands and the top
/// level show them here instead.
const ADMIN_FLAGS_HELP: &str = "\
Admin API or store (tenant, key, signing-key, audit, usage, seed):
      --admin-url <URL>       The admin API to go through [env: KEYGATE_ADMIN_URL]. Default:
                              http://<server.admin_listen>; the token is server.admin_token
                              (KEYGATE_SERVER_ADMIN_TOKEN); http:// only to a loopback address
      --admin-ca-file <FILE>  PEM authorities for an https:// admin URL, besides the system's
                              [env: KEYGATE_ADMIN_CA_FILE]
      --store                 Work on the configured store directly, not through the admin API
                              (bootstrap, recovery); the store must exist (`keygate migrate`)
  -o, --output <OUTPUT>       json (the API's answer as it is) or table; default: a table on a
                              terminal, JSON otherwise";

/// The admin flags, by their ids.
const ADMIN_FLAG_IDS: [&str; 4] = ["admin_url", "admin_ca_file", "store", "output"];

/// The commands that take the admin flags.
const ADMIN_COMMANDS: [&str; 6] = ["tenant", "key", "signing-key", "audit", "usage", "seed"];

impl Cli {
    /// The command line as clap reads it, the admin flags described where they apply.
    pub(crate) fn command_with_help() -> clap::Command {
        let mut command = Self::command();
        for name in ADMIN_COMMANDS {
            command = command.mut_subcommand(name, |sub| {
                sub.after_help(ADMIN_FLAGS_HELP).mut_subcommands(|nested| nested.after_help(ADMIN_FLAGS_HELP))
            });
        }
        let top = command.get_after_help().map(|text| format!("{text}\n\n{ADMIN_FLAGS_HELP}"));
        command.after_help(top.unwrap_or_else(|| ADMIN_FLAGS_HELP.to_owned()))
    }

    /// The command line for shell completions: every flag, the admin ones included.
    pub(crate) fn command_to_complete() -> clap::Command {
        ADMIN_FLAG_IDS.iter().fold(Self::command(), |command, id| command.mut_arg(*id, |arg| arg.hide(false)))
    }

    /// Reads the process's arguments; exits with clap's message on bad ones, or with help.
    pub(crate) fn from_env() -> Self {
        let matches = Self::command_with_help().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// The admin API's answer as it is: `{"data": …}`, lists with `nextCursor`.
    Json,
    /// Columns for a list, field and value for one object.
    Table,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Apply pending migrations, then serve the public and admin listeners.
    Serve,
    /// Apply pending migrations, and exit. A SQLite file is created if missing; a PostgreSQL
    /// database must exist (`createdb`).
    Migrate,
    /// Create demo tenants and keys, print ready-to-run curl lines, and serve.
    Quickstart,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the keys that sign session tokens.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// The audit log: every admin write, newest first (SPEC §12).
    Audit(AuditArgs),
    /// Requests counted per hour or day, by outcome (SPEC §13).
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script, e.g. `keygate completions bash > /etc/bash_completion.d/keygate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Shadows the global `--config`, which completions never read, so that their help
        /// does not offer it (still accepted, and ignored).
        #[arg(long, hide = true)]
        config: Option<PathBuf>,
    },
    /// Fill the store with many tenants and keys, for load tests (needs --store; the store must
    /// exist). No secret is printed.
    Seed {
        /// How many keys.
        #[arg(long)]
        keys: usize,
        /// How many tenants (seed-0, seed-1, …) the keys are spread over.
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        /// How many of the keys are rolled: one earlier secret each, live for 30 days.
        #[arg(long, default_value_t = 0)]
        rolled: usize,
        /// How many of the keys are imported: secrets in no format of keygate's.
        #[arg(long, default_value_t = 0)]
        imported: usize,
        /// Write the audit entries the tenants' and keys' making would have (actor `seed`,
        /// spread over the year before).
        #[arg(long)]
        audit: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration (file and KEYGATE_* variables) and print the effective
    /// settings as TOML, every default filled in and secrets redacted. Exit code 2 and a
    /// message naming the setting when it is invalid.
    Check,
}

#[derive(Subcommand)]
pub(crate) enum SigningKeyCommand {
    /// List signing keys: which signs, which still verify, which are retired.
    List,
    /// Generate a key of the configured algorithm that signs from now on; older keys keep
    /// verifying until retired.
    Rotate,
    /// Retire a key: sessions it signed stop verifying.
    Retire { kid: String },
}

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant id (generated as ten_… when absent).
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: TenantFields,
        #[command(flatten)]
        rate: BudgetArgs,
    },
    /// Show one tenant.
    Get { id: String },
    /// List tenants.
    List(PageArgs),
    /// Change a tenant; what is not given stays.
    Update {
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: TenantFields,
        /// Remove every module.
        #[arg(long, conflicts_with = "modules")]
        no_modules: bool,
        #[command(flatten)]
        rate: BudgetChange,
    },
    /// Delete a tenant that has no keys left.
    Delete { id: String },
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// Create an API key; its secret is printed this once.
    Create {
        tenant_id: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: KeyFields,
        #[command(flatten)]
        rate: BudgetArgs,
    },
    /// Show one key.
    Get { id: String },
    /// List a tenant's keys.
    List {
        tenant_id: String,
        /// Only the keys in this state now: usable, revoked or expired.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Find keys across tenants by the start of a display prefix (at least 6 characters),
    /// current or earlier: the prefix a customer pastes into a ticket.
    Find {
        prefix: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a key; what is not given stays.
    Update {
        id: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: KeyFields,
        /// Remove every allowed origin.
        #[arg(long, conflicts_with = "origins")]
        no_origins: bool,
        /// Remove the expiry.
        #[arg(long, conflicts_with = "expires_at")]
        no_expiry: bool,
        #[command(flatten)]
        rate: BudgetChange,
    },
    /// Delete a key: gone from every list, each of its secrets refused as unknown.
    Delete { id: String },
    /// Revoke a key (idempotent): every one of its secrets.
    Revoke { id: String },
    /// Import keys migrated from elsewhere: one JSON object a line on standard input, each
    /// the body of a key creation with `importHash` (the SHA-256 of the existing secret, in
    /// hex) and `prefix`. Prints each line's outcome; a bad line stops nothing else.
    Import {
        /// The tenant the keys belong to.
        #[arg(long)]
        tenant: String,
    },
    /// Roll a key: a new secret for the same key, printed this once; the earlier secrets go on
    /// working for the overlap.
    Roll {
        id: String,
        /// How long the earlier secrets go on working, 0–2592000 seconds (30 days).
        #[arg(long)]
        overlap_seconds: u64,
    },
}

#[derive(Subcommand)]
pub(crate) enum UsageCommand {
    /// One key's usage.
    Key {
        id: String,
        #[command(flatten)]
        range: UsageRange,
    },
    /// A tenant's usage: its keys' summed, deleted keys' included.
    Tenant {
        id: String,
        #[command(flatten)]
        range: UsageRange,
        /// `key`: a row per key and bucket.
        #[arg(long)]
        group_by: Option<String>,
    },
}

/// The buckets a usage query asks for.
#[derive(Args)]
pub(crate) struct UsageRange {
    /// The first bucket's start (RFC 3339, aligned to the granularity), e.g. 2026-12-01T00:00:00Z.
    #[arg(long)]
    pub(crate) from: String,
    /// The end, exclusive: at most 744 hours or 400 days after --from.
    #[arg(long)]
    pub(crate) to: String,
    /// hour (the default) or day (UTC days).
    #[arg(long)]
    pub(crate) granularity: Option<String>,
}

/// `keygate audit`'s filters, each optional.
#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Entries of this tenant (its own and its keys').
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Entries of this tenant, key or signing key id.
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// One action, e.g. key.roll or tenant.update.
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Entries at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Entries at or before this RFC 3339 time.
    #[arg(long)]
    pub(crate) until: Option<String>,
    #[command(flatten)]
    pub(crate) page: PageArgs,
}

#[derive(Args)]
pub(crate) struct PageArgs {
    /// Items per page, 1–1000 (default 100).
    #[arg(long)]
    pub(crate) limit: Option<String>,
    /// Where the page starts: the previous page's nextCursor.
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

/// The budgets of step 4: a rate-limit override and a quota.
#[derive(Args)]
pub(crate) struct BudgetArgs {
    /// Requests per window (with --window-seconds).
    #[arg(long, requires = "window_seconds")]
    pub(crate) rate_limit: Option<u64>,
    /// The window of --rate-limit, in seconds.
    #[arg(long, requires = "rate_limit")]
    pub(crate) window_seconds: Option<u64>,
    /// A quota: at most this many requests per --quota-period.
    #[arg(long, requires = "quota_period")]
    pub(crate) quota: Option<u64>,
    /// The period of --quota: day or month (UTC calendar periods).
    #[arg(long, requires = "quota")]
    pub(crate) quota_period: Option<String>,
}

#[derive(Args)]
pub(crate) struct BudgetChange {
    #[command(flatten)]
    pub(crate) set: BudgetArgs,
    /// Remove the rate-limit override.
    #[arg(long, conflicts_with = "rate_limit")]
    pub(crate) clear_rate_limit: bool,
    /// Remove the quota.
    #[arg(long, conflicts_with = "quota")]
    pub(crate) clear_quota: bool,
}

/// A tenant's fields that create and update share.
#[derive(Args)]
pub(crate) struct TenantFields {
    /// active | suspended
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// active | trialing | past_due | cancelled
    #[arg(long)]
    pub(crate) subscription: Option<String>,
    /// An enabled module (repeat for several); replaces the set.
    #[arg(long = "module")]
    pub(crate) modules: Vec<String>,
    /// Metadata, a JSON object (replaces it whole; `null` clears it).
    #[arg(long)]
    pub(crate) meta: Option<String>,
}

/// A key's fields that create and update share.
#[derive(Args)]
pub(crate) struct KeyFields {
    /// A granted scope (repeat for several); replaces the list.
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
    /// An allowed browser origin (repeat for several); replaces the list.
    #[arg(long = "origin")]
    pub(crate) origins: Vec<String>,
    /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
    #[arg(long)]
    pub(crate) expires_at: Option<String>,
    /// Metadata, a JSON object (replaces it whole; `null` clears it).
    #[arg(long)]
    pub(crate) meta: Option<String>,
}
