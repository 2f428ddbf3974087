//! The `instance-profile-controller` binary: parses flags, calls the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use instance_profile_controller::cli::{Cli, Command, FileArgs, GlobalArgs};
use instance_profile_controller::filemode::{self, FileModeOptions};
use instance_profile_controller::metrics::Metrics;
use instance_profile_controller::reconcile::Engine;
use instance_profile_controller::reconcile::policy::PolicySet;
use instance_profile_controller::{crd, files, telemetry};

/// jemalloc instead of the system allocator: `run` keeps many small objects
/// for a long time (the binding cache) while every reconcile and relist
/// allocates and frees short-lived ones around them. glibc's allocator keeps
/// the pages that churn fragments; jemalloc's size classes and its background
/// purge thread hand them back.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else exits 1,
            // never clap's 2, which `plan` uses for "changes".
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = telemetry::init(&cli.global.log_format, &cli.global.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
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
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
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
            let (engine, bindings, opts) = file_mode(&cli.global, &args, None).await?;
            filemode::plan(&engine, &bindings, &opts).await
        }
        Command::Apply(args) => {
            let (engine, bindings, opts) =
                file_mode(&cli.global, &args.file, Some(args.timeout)).await?;
            filemode::apply(&engine, &bindings, &opts).await
        }
        Command::Run(args) => instance_profile_controller::controller::run(&cli.global, &args)
            .await
            .map(|()| 0),
        Command::Doctor(args) => {
            // A bad --cluster-id or path prefix is a usage error (exit 1); from
            // here on doctor reports its own failures, with exit 2.
            let config = cli.global.engine_config_for_doctor()?;
            Ok(instance_profile_controller::doctor::command(&cli.global, &config, &args).await)
        }
    }
}

/// Reads and checks the files before anything touches AWS.
async fn file_mode(
    global: &GlobalArgs,
    args: &FileArgs,
    timeout: Option<std::time::Duration>,
) -> Result<(Engine, Vec<files::FileBinding>, FileModeOptions), instance_profile_controller::Error>
{
    use instance_profile_controller::Error;
    let config = global.engine_config()?;
    let loaded = files::load_all(&args.files).map_err(|errors| Error::Input(errors.join("\n")))?;
    let policies = if loaded.policies.is_empty() {
        eprintln!(
            "notice: no InstanceProfilePolicy in the files, so the policy gate is off (file mode runs with your own AWS credentials)"
        );
        None
    } else {
        Some(Arc::new(PolicySet {
            policies: loaded
                .policies
                .iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.spec.clone()))
                .collect(),
            namespace_labels: loaded.namespaces.clone(),
        }))
    };
    let bindings = loaded.bindings;
    // Like `kubectl apply --prune` with an empty input: an empty stream, a
    // file of comments or one of policies only must not mean "delete everything".
    if args.prune && !args.prune_all && bindings.is_empty() {
        return Err(Error::Input(
            "--prune: the files hold no InstanceProfileBinding, so pruning would delete every instance profile this cluster id owns; refusing. Pass --prune-all if that is what you want".into(),
        ));
    }
    let aws = global.connect(Arc::new(Metrics::new())).await;
    aws.check_credentials().await.map_err(|e| {
        Error::Config(format!("no AWS credentials: {e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or run where IRSA/Pod Identity/an instance role provides them"))
    })?;
    let engine = Engine::new(aws, config);
    let opts = FileModeOptions {
        prune: args.prune || args.prune_all,
        timeout: timeout.unwrap_or_default(),
        output: args.output,
        concurrency: usize::from(global.concurrency),
        verbose: args.verbose,
        policies,
    };
    Ok((engine, bindings, opts))
}
