"""Synthetic labelled MRI slices: a conditional GAN (pix2pix) that draws a slice of a given
tumour class for a given head outline and tumour mask (``pix2pix``), the writer of a synthetic
dataset with its leakage guard (``generate``) and a realism measure (``realism``)."""
