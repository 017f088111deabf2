"""``medassist federated simulate | server | client``: federated learning on Flower.

``simulate`` runs every site as a virtual client in Flower's simulation engine; ``server`` and
``client`` are the processes of a real federation on a network (each client holds only its own
site's rows). All three end in an ordinary model bundle, written by whoever plays the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medassist.cli.commands import err, out
from medassist.options import ModelSize, look_up_option

if TYPE_CHECKING:
    from medassist.pipeline.federated import FederatedOutcome
    from medassist.training.federated import FederationConfig

app = typer.Typer(help="Federated learning (Flower): train across sites without moving rows.", no_args_is_help=True)

STRATEGY_HELP = "fedavg or fedprox."


def _config(*, strategy: str, mu: float, rounds: int, min_clients: int, dp_noise: float | None, dp_clip: float,
            dp_delta: float, timeout: float) -> FederationConfig:
    from medassist.training.federated import FederationConfig, FedStrategy

    return FederationConfig(strategy=look_up_option(strategy, FedStrategy, name="federated strategy"), mu=mu, rounds=rounds, min_clients=min_clients, dp_noise=dp_noise,
                            dp_clip=dp_clip, dp_delta=dp_delta, timeout=timeout)


def _print_outcome(outcome: FederatedOutcome) -> None:
    m = outcome.metrics
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False)
    auc = m["metrics"]["auc"]["value"]
    sites = "  ".join(f"{s} {'n/a' if r['auc'] is None else format(r['auc'], '.3f')} (n={r['n_test']})" for s, r in m["per_site"].items())
    err.print(f"pooled held-out AUC {'n/a' if auc is None else format(auc, '.3f')} (n={m['n']}); per site: {sites}", highlight=False)
    if outcome.result.privacy:
        p = outcome.result.privacy
        err.print(f"differential privacy (site level): ε = {p['epsilon']:.3g}, δ = {p['delta']:g} "
                  f"(noise multiplier {p['noise_multiplier']:g}, clip {p['clipping_norm']:g}, {p['rounds']} rounds)", highlight=False)
    out.print(f"bundle: {outcome.bundle_dir}", highlight=False)


@app.command()
def simulate(
    data: str = typer.Option(..., "--data", help="CSV file or bundled data set name (e.g. heart_disease)."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write the model bundle."),
    sites: int | None = typer.Option(None, "--sites", help="Sites: with a site column, keep the N largest; without, a seeded stratified split into N."),
    site_column: str | None = typer.Option(None, "--site-column", help="Column naming each row's site (a bundled data set brings its own)."),
    target: str | None = typer.Option(None, "--target", help="Outcome column (a bundled data set brings its own)."),
    positive_class: str | None = typer.Option(None, "--positive-class"),
    id_column: str | None = typer.Option(None, "--id-column"),
    exclude: list[str] = typer.Option([], "--exclude", help="Column to leave out (repeatable)."),
    strategy: str = typer.Option("fedavg", "--strategy", help=STRATEGY_HELP),
    mu: float = typer.Option(0.01, "--mu", help="FedProx proximal weight μ."),
    rounds: int = typer.Option(20, "--rounds"),
    local_epochs: int = typer.Option(2, "--local-epochs"),
    model: str = typer.Option("mlp", "--model"),
    size: ModelSize = typer.Option(ModelSize.SMALL, "--size", case_sensitive=False, help="Model size; large has over a million parameters."),
    seed: int = typer.Option(0, "--seed"),
    dp_noise: float | None = typer.Option(None, "--dp-noise", help="Noise multiplier σ of site-level DP on the updates (off when not given)."),
    dp_clip: float = typer.Option(1.0, "--dp-clip", help="L2 bound of one site's update under DP."),
    dp_delta: float = typer.Option(1e-5, "--dp-delta", help="δ at which ε is reported."),
    cpus: int = typer.Option(0, "--cpus", help="CPUs for the simulation engine (0: one per site, at most the machine's)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds any one round may take."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    verbose: bool = typer.Option(False, "--verbose", help="Show Flower's and Ray's logs."),
) -> None:
    """Simulate a federation of the table's sites in Flower's simulation engine."""
    from medassist.data.sources import resolve_table
    from medassist.pipeline.federated import FederatedSpec
    from medassist.pipeline.federated import simulate as run

    frame, source = resolve_table(data)
    info = source.dataset
    if info is not None:
        target = target or info.target
        id_column = id_column or info.id_column
        positive_class = positive_class or (info.positive_class if target == info.target else None)
    site_column = site_column or source.site_column
    spec = FederatedSpec(target=target, positive_class=positive_class, id_column=id_column, model=model, size=size,
                         local_epochs=local_epochs, seed=seed)
    config = _config(strategy=strategy, mu=mu, rounds=rounds, min_clients=2, dp_noise=dp_noise, dp_clip=dp_clip,
                     dp_delta=dp_delta, timeout=timeout)
    outcome = run(frame, source=source, spec=spec, config=config, out_dir=out_dir, site_column=site_column, n_sites=sites,
                  exclude=tuple(exclude), overwrite=overwrite, verbose=verbose, num_cpus=cpus or None)
    _print_outcome(outcome)


@app.command()
def server(
    out_dir: Path = typer.Option(..., "--out", help="Where to write the model bundle."),
    min_clients: int = typer.Option(..., "--min-clients", help="Sites to wait for; every round uses all of them."),
    address: str = typer.Option("127.0.0.1:8080", "--address", help="HOST:PORT to listen on (gRPC, no TLS)."),
    rounds: int = typer.Option(20, "--rounds"),
    strategy: str = typer.Option("fedavg", "--strategy", help=STRATEGY_HELP),
    mu: float = typer.Option(0.01, "--mu", help="FedProx proximal weight μ."),
    local_epochs: int = typer.Option(2, "--local-epochs"),
    target: str | None = typer.Option(None, "--target", help="Outcome the sites must report (default: whatever they agree on)."),
    positive_class: str | None = typer.Option(None, "--positive-class"),
    model: str = typer.Option("mlp", "--model"),
    size: ModelSize = typer.Option(ModelSize.SMALL, "--size", case_sensitive=False, help="Model size; large has over a million parameters."),
    seed: int = typer.Option(0, "--seed"),
    dp_noise: float | None = typer.Option(None, "--dp-noise", help="Noise multiplier σ of site-level DP on the updates."),
    dp_clip: float = typer.Option(1.0, "--dp-clip"),
    dp_delta: float = typer.Option(1e-5, "--dp-delta"),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the sites, and for any one round."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Run the server of a federation: no data here, only the plan, the rounds and the bundle."""
    from medassist.pipeline.federated import FederatedSpec, serve

    spec = FederatedSpec(target=target, positive_class=positive_class, model=model, size=size, local_epochs=local_epochs, seed=seed)
    config = _config(strategy=strategy, mu=mu, rounds=rounds, min_clients=min_clients, dp_noise=dp_noise, dp_clip=dp_clip,
                     dp_delta=dp_delta, timeout=timeout)
    err.print(f"federated server on {address}: waiting for {min_clients} site(s)", highlight=False)
    _print_outcome(serve(address=address, spec=spec, config=config, out_dir=out_dir, overwrite=overwrite, verbose=verbose))


@app.command()
def client(
    server_address: str = typer.Option(..., "--server", help="The server's HOST:PORT."),
    data: str = typer.Option(..., "--data", help="This site's CSV file, or a bundled data set (filtered to --site by its site column)."),
    site: str = typer.Option(..., "--site", help="This site's name (and its value in the site column, if there is one)."),
    site_column: str | None = typer.Option(None, "--site-column", help="Keep only rows whose COLUMN equals --site."),
    target: str | None = typer.Option(None, "--target"),
    id_column: str | None = typer.Option(None, "--id-column"),
    exclude: list[str] = typer.Option([], "--exclude"),
    seed: int = typer.Option(0, "--seed", help="Seeds this site's train/validation/test split."),
    wait: float = typer.Option(120.0, "--wait", help="Seconds to keep trying to reach the server."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Join a federation as one site; runs until the server finishes."""
    from medassist.data.sources import resolve_table
    from medassist.exceptions import ConfigError
    from medassist.pipeline.federated import join

    frame, source = resolve_table(data)
    info = source.dataset
    if info is not None:
        target = target or info.target
        id_column = id_column or info.id_column
    site_column = site_column or source.site_column
    if not target:
        raise ConfigError(f"{source.name}: which column is the outcome? Pass --target COLUMN.")
    err.print(f"site {site}: joining {server_address}", highlight=False)
    join(frame, source=source, server_address=server_address, site=site, target=target, site_column=site_column,
         id_column=id_column, exclude=tuple(exclude), seed=seed, verbose=verbose, max_wait=wait)
    err.print(f"site {site}: done", highlight=False)
