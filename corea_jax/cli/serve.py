r"""`corea-jax serve`: the trained cascade as one OpenAI-compatible HTTP endpoint.

    corea-jax serve --config=configs/serve.py --config.slm.path=RUN/export \
        --config.tau.summary=CASCADE_DIR/summary.json --config.llm.base_url=http://HOST/v1
    corea-jax serve --config=configs/serve.py:demo     # the demo's COREA policy, SIMULATED LLM

POST /v1/chat/completions (the SLM answers; below tau the upstream LLM does; the response's
`corea` field says who, with the confidence, tau, tokens and cost of each side), GET /v1/models,
GET /health (503 until the SLM is warm), GET /metrics (Prometheus). SIGTERM drains the requests
in flight and exits. See corea_jax/serving/.
"""

from pathlib import Path

from corea_jax.errors import CoreaError

TAKES_CONFIG = True
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "serve.py"


def add_arguments(parser):
    parser.add_argument("--host", default=None, help="overrides server.host (loopback default)")
    parser.add_argument("--port", type=int, default=None, help="overrides server.port")


def run(args) -> int:
    import dataclasses
    import logging

    if args.config is None:
        raise CoreaError("serve needs --config=configs/serve.py[:demo]")
    from corea_jax.serving import ServeConfig, build_app, build_service
    from corea_jax.serving.app import DrainingServer, uvicorn_config

    config = ServeConfig.from_config(args.config)
    server = dataclasses.replace(
        config.server,
        host=args.host if args.host is not None else config.server.host,
        port=args.port if args.port is not None else config.server.port,
    )
    config = dataclasses.replace(config, server=server)
    logging.basicConfig(
        level=server.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    service = build_service(config)
    DrainingServer(
        uvicorn_config(
            build_app(service),
            server.host,
            server.port,
            drain_timeout_s=server.drain_timeout_s,
            log_level=server.log_level,
        )  # fmt: skip
    ).run()
    return 0
