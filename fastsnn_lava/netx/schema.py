"""Every name and constant of the netx HDF5 files this project writes and reads (see export/FORMAT.md).

Both layouts share one tree (lava-dl netx's, ``lava/lib/dl/netx/hdf5.py``)::

    /layer/0                 type 'input', shape
    /layer/k                 type 'conv' | 'dense' | 'flatten', shape, weight, bias, conv geometry,
                             neuron/{type, <the family's keys>}, skip/<m> (IF only, FORMAT.md §5a)
    /fastsnn                 format_version, bits, timesteps, reset_interval, input_max, input_shape, meta

and differ only in the neuron group: this project's IF neurons (``NEURON_TYPES`` with ``theta``)
or netx's CUBA LIF (``CUBA_KEYS``, ``refDelay = 1``, ``gradedSpike = False``).
"""
from ..ir import reset_window as reset_interval  # noqa: F401  (the window length the files record)

FORMAT_VERSION = 2  # 2 adds the residual extension /layer/<k>/skip (FORMAT.md §5a); files without skips stay 1
LAYER_GROUP = "layer"  # /layer/<k>: what netx reads
SKIP_GROUP = "skip"  # /layer/<k>/skip/<m>: shortcut synapses into layer k; netx does not read it
NEURON_GROUP = "neuron"  # /layer/<k>/neuron: the neuron type and its parameters
META_GROUP = "fastsnn"  # netx reads only /layer and ignores other top-level groups
TYPE_KEY = "type"  # a layer's and a neuron's type string
GEOMETRY_KEYS = ("stride", "padding", "dilation")  # a conv's (and a conv skip's) geometry, with GROUPS_KEY
GROUPS_KEY = "groups"
META_KEYS = ("format_version", "bits", "timesteps", "reset_interval", "input_max", "input_shape", "meta")

# neuron/type strings of the file ↔ the IR's neuron names (fastsnn_lava.neuron); an IF neuron's θ is THETA_KEY
NEURON_TYPES = {"signed_if": "SIGNED_IF", "unsigned_if": "UNSIGNED_IF", "accumulate": "ACCUMULATE"}
IR_NEURONS = {v: k for k, v in NEURON_TYPES.items()}
THETA_KEY = "theta"

# netx's CUBA neuron: CubaLIF field ↔ file key; the fixed keys every written CUBA layer carries
CUBA_TYPE = "CUBA"
LIF_TYPES = ("CUBA", "LOIHI")  # the netx neuron types read as CubaLIF
CUBA_KEYS = {"i_decay": "iDecay", "v_decay": "vDecay", "vth": "vThMant"}
CUBA_FIXED = {"refDelay": 1}
GRADED_KEY = "gradedSpike"  # written False: binary spikes
# netx's neuron for a dense layer without a neuron group (hdf5.py create_dense): iDecay 0, vDecay 4096
DEFAULT_NEURON = {"vth": 1 << 18 - 1, "i_decay": 0, "v_decay": 4096}
NETX_UNBUILT = ("pool", "convT", "unpool", "average", "concat")  # hdf5.py raises NotImplementedError for these


def format_version(has_skips: bool) -> int:
    """The version an IF file is written with: 1 unless it uses the skip extension."""
    return 2 if has_skips else 1

# the datasets of a /layer/<k> group (and of a skip group: source, type, weight, delay, conv geometry)
SHAPE_KEY, WEIGHT_KEY, BIAS_KEY, DELAY_KEY, SOURCE_KEY = "shape", "weight", "bias", "delay", "source"
INPUT_TYPE, FLATTEN_TYPE = "input", "flatten"  # the type of /layer/0 and of the group before a dense after a conv
