"""`python -m pneumonia pacs scan|watch`: the command line of the PACS round trip (imports nothing heavy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pneumonia.config import MODELS_DIR
from pneumonia.errors import PneumoniaError
from pneumonia.threshold import Threshold

EXIT_SOME_SKIPPED = 3
EXIT_INTERRUPTED = 130


def add_parser(commands) -> None:
    pacs = commands.add_parser(
        "pacs", help="screen CR/DX films in a PACS over DICOMweb and store the results there as DICOM SRs",
        description="Find every CR and DX film not yet screened by this model in a DICOMweb PACS (such as Orthanc), "
        "screen it as the app does, and store a DICOM Structured Report in its study (docs/pacs.md). The password "
        "comes from PNEUMONIA_PACS_PASSWORD or --password-file, a bearer token from PNEUMONIA_PACS_TOKEN.",
    )
    pacs_commands = pacs.add_subparsers(dest="pacs_command", required=True)
    scan = pacs_commands.add_parser("scan", help="one pass: screen what is not yet screened, then stop")
    watch = pacs_commands.add_parser("watch", help="a pass every --every seconds until Ctrl-C")
    watch.add_argument("--every", type=float, default=60.0, metavar="SECONDS", help="seconds between passes (60)")
    for command in (scan, watch):
        command.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://HOST:8042/dicom-web")
        command.add_argument("--user", help="user name for HTTP Basic authentication")
        command.add_argument("--password-file", type=Path, metavar="FILE",
                             help=f"read the password from FILE (or set {'PNEUMONIA_PACS_PASSWORD'})")
        command.add_argument("--since", metavar="DATE", help="only studies from this date on (YYYY-MM-DD)")
        command.add_argument("--with-map", action="store_true",
                             help="also store the Grad-CAM map as a Secondary Capture (slower)")
        command.add_argument("--threshold", type=float, help="decision threshold (default: the model's own)")
        command.add_argument("--ca-file", type=Path, metavar="PEM",
                             help="CA certificate(s) to verify an https PACS signed by the hospital's own CA")
        command.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                             help="seconds to wait for each answer (30)")
        command.add_argument("--tries", type=int, default=4,
                             help="tries per request when the PACS is down or answers 5xx, waiting 1, 2, 4 s... (4)")
        command.add_argument("--model-dir", type=Path, default=MODELS_DIR)


def _client(args):
    try:
        import dicomweb_client  # noqa: F401
        import highdicom  # noqa: F401
    except ImportError:
        raise PneumoniaError("the pacs commands need the optional extra: pip install '.[pacs]' "
                             "(dicomweb-client and highdicom).") from None
    from pneumonia.pacs.client import PacsClient, read_credentials

    credentials = read_credentials(args.user, args.password_file)
    return PacsClient(args.url, credentials, timeout_s=args.timeout, tries=args.tries, ca_file=args.ca_file)


def run(args: argparse.Namespace) -> int:
    from pneumonia.interrupts import first_ctrl_c_finishes_the_chunk
    from pneumonia.pacs.client import PacsAuthError, PacsError
    from pneumonia.pacs.scan import scan_pass, since_filter

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise PneumoniaError(f"--threshold must lie in [0, 1], got {args.threshold}.")
    if args.tries < 1 or args.timeout <= 0 or getattr(args, "every", 1.0) <= 0:
        raise PneumoniaError("--tries, --timeout and --every must be positive.")
    since_filter(args.since)  # a bad date is refused before the model loads
    client = _client(args)
    client.check_login()
    from pneumonia.screening.predictor import load_predictor

    predictor = load_predictor(args.model_dir)
    threshold = (predictor.default_threshold if args.threshold is None
                 else Threshold.by_hand(args.threshold, "set with --threshold"))

    def say(line: str) -> None:
        print(line, flush=True)

    def warn(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with first_ctrl_c_finishes_the_chunk() as stop:
        if args.pacs_command == "scan":
            summary = scan_pass(client, predictor, threshold, args.with_map, args.since, stop, say, warn)
            warn(summary.line(threshold))
            if summary.interrupted:
                warn("interrupted: the films done so far are stored; run the same command to finish")
                return EXIT_INTERRUPTED
            return EXIT_SOME_SKIPPED if summary.skipped else 0
        warn(f"watching {client.root} every {args.every:g} s; Ctrl-C stops after the films in hand")
        while not stop.is_set():
            try:
                summary = scan_pass(client, predictor, threshold, args.with_map, args.since, stop, say, warn)
                warn(summary.line(threshold))
            except PacsAuthError:
                raise
            except PacsError as exc:  # a PACS down for a while: say so and try again at the next pass
                warn(f"warning: {exc}")
            stop.wait(args.every)
        warn("stopped")
        return 0
