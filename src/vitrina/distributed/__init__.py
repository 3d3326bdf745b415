"""Scale-out on Ray: featurization with Ray Data (more to come: training, batch scoring)."""
