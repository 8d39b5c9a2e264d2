"""emdsim's Hydra launcher plugin (Hydra instantiates launchers only from the ``hydra_plugins``
namespace package): see :mod:`hydra_plugins.emdsim_launcher.launcher`."""
