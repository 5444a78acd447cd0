"""MRI physics in torch: FFTs, masks, coil maps, SENSE, PI-CS, tensor fit. Batched, any device."""
