//! The `instance-profile-controller` binary: parses flags, calls the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use instance_profile_controller::cli::{Cli, Command, EngineArgs, FileArgs, usage_error_code};
use instance_profile_controller::filemode::{self, FileModeOptions};
use instance_profile_controller::metrics::Metrics;
use instance_profile_controller::reconcile::Engine;
use instance_profile_controller::{crd, files, telemetry};

/// jemalloc instead of the system allocator: `run` keeps many small objects
/// for a long time (the binding cache) while every reconcile and relist
/// allocates and frees short-lived ones around them. glibc's allocator keeps
/// the pages that churn fragments; jemalloc's size classes and its background
/// purge thread hand them back. Its settings are built in
/// (`.cargo/config.toml`: one arena, freed pages returned after 1 s).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Until the subcommand runs, any failure is a usage error: exit 1, except
    // for doctor, whose 1 means "a check found a problem" (exit 2 there).
    // Never clap's own 2 for the others: `plan` uses 2 for "changes".
    let failed = ExitCode::from(usage_error_code(std::env::args_os().nth(1).as_deref()));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let _ = e.print();
            return if e.use_stderr() {
                failed
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let failed = match cli.command {
        Command::Doctor(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    };
    let log = cli.command.log().cloned().unwrap_or_default();
    if let Err(e) = telemetry::init(&log.log_format, &log.log_level) {
        eprintln!("error: {e}");
        return failed;
    }
    // Few blocking threads (DNS lookups, file reads): each thread that
    // allocates keeps an allocator cache of its own.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return failed;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            failed
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, instance_profile_controller::Error> {
    match cli.command {
        Command::Crd => {
            let yaml = crd::crds_yaml()
                .map_err(|e| instance_profile_controller::Error::Config(e.to_string()))?;
            print!("{yaml}");
            Ok(0)
        }
        Command::Plan(args) => {
            let (engine, bindings, opts) = file_mode(&args.engine, &args.file, None).await?;
            filemode::plan(&engine, bindings, &opts).await
        }
        Command::Apply(args) => {
            let (engine, bindings, opts) =
                file_mode(&args.engine, &args.file, Some(args.timeout)).await?;
            filemode::apply(&engine, bindings, &opts).await
        }
        Command::Run(args) => instance_profile_controller::controller::run(&args)
            .await
            .map(|()| 0),
        // Doctor reports its own failures, a bad --cluster-id included, with exit 2.
        Command::Doctor(args) => Ok(instance_profile_controller::doctor::command(&args).await),
    }
}

/// Reads and checks the files before anything touches AWS.
async fn file_mode(
    engine_args: &EngineArgs,
    args: &FileArgs,
    timeout: Option<std::time::Duration>,
) -> Result<(Engine, Vec<files::FileBinding>, FileModeOptions), instance_profile_controller::Error>
{
    use instance_profile_controller::Error;
    let config = engine_args.engine_config()?;
    let loaded = files::load_all(&args.files).map_err(|errors| Error::Input(errors.join("\n")))?;
    let policies = loaded.policy_set().map(Arc::new);
    if policies.is_none() {
        eprintln!(
            "notice: no InstanceProfilePolicy in the files, so the policy gate is off (file mode runs with your own AWS credentials)"
        );
    }
    let bindings = loaded.bindings;
    // Like `kubectl apply --prune` with an empty input: an empty stream, a
    // file of comments or one of policies only must not mean "delete everything".
    if args.prune && !args.prune_all && bindings.is_empty() {
        return Err(Error::Input(
            "--prune: the files hold no InstanceProfileBinding, so pruning would delete every instance profile this cluster id owns; refusing. Pass --prune-all if that is what you want".into(),
        ));
    }
    let aws = engine_args.connect(Arc::new(Metrics::new())).await;
    aws.check_credentials().await.map_err(|e| {
        Error::Config(format!("no AWS credentials: {e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or run where IRSA/Pod Identity/an instance role provides them"))
    })?;
    let engine = Engine::new(aws, config);
    let opts = FileModeOptions {
        prune: args.prune || args.prune_all,
        timeout: timeout.unwrap_or_default(),
        output: args.output,
        concurrency: usize::from(engine_args.concurrency),
        verbose: args.verbose,
        policies,
    };
    Ok((engine, bindings, opts))
}
