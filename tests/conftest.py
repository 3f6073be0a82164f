pytest_plugins = ["devcluster.pytest_plugin", "devcluster.sim.fixtures"]
