"""Scale-out on Ray: featurization on Ray Data, data-parallel training on Ray Train, batch scoring."""
