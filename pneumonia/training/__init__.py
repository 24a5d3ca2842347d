"""Making a model: training and calibration (`train`), the one test-set report (`evaluate`), the stress copies of
validation (`stress`), and fitting the input gate (`gate_fit`). Nothing at run time imports this package."""
