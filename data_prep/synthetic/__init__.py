"""Procedural synthetic dataset in the Fashion-Gen HDF5 layout.

Every description is true of every image of its product, and the image region of
each visible content word is known, so image-text matching and token-region
alignment become measurable without the real (51 GB) Fashion-Gen files.

Modules:
    catalog: the vocabulary (categories, colours, patterns, details, brands).
    product_sampler: ``sample_product`` draws a ``ProductSpec`` with its text.
    garment_renderer: ``render_product_image`` draws one pose and its word masks.
    fashiongen_writer: ``write_synthetic_fashiongen`` writes the HDF5 files.
"""
