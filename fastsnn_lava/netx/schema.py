"""Names and conventions of the netx HDF5 files this project writes (see export/FORMAT.md)."""

FORMAT_VERSION = 2  # 2 adds the residual extension /layer/<k>/skip (FORMAT.md §5a); files without skips stay 1
SKIP_GROUP = "skip"  # /layer/<k>/skip/<m>: shortcut synapses into layer k; netx does not read it
META_GROUP = "fastsnn"  # netx reads only /layer and ignores other top-level groups

# neuron/type strings of the file ↔ the IR's neuron kinds
NEURON_TYPES = {"signed_if": "SIGNED_IF", "unsigned_if": "UNSIGNED_IF", "accumulate": "ACCUMULATE"}
IR_NEURONS = {v: k for k, v in NEURON_TYPES.items()}


def reset_interval(timesteps: int) -> int:
    """Steps per sample window: the next power of two above T (Loihi 2 needs a power of two)."""
    interval = 1
    while interval < timesteps + 1:
        interval *= 2
    return interval


def format_version(has_skips: bool) -> int:
    """The version a file is written with: 1 unless it uses the skip extension."""
    return 2 if has_skips else 1
