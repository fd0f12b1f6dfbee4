"""Ground-truth generators: connectivity, neuron models, stimuli, integration."""
