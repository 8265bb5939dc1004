"""SavedModel export for TF Serving (DESIGN.md §7; issue #6, "Export").

``saved_model_export.export_saved_model`` writes a SavedModel whose signatures take
named tensors (``input_ids``, ``input_mask``, ``patch_features``, ``patch_boxes``)
or, optionally, raw description strings, and return named outputs per task
(``task_signatures.TASK_SIGNATURES``). Nothing heavy is imported here.
"""
