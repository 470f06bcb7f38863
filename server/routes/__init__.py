"""Routes grouped like the dryAPI docs: generation, analysis, transformation, prompts, utilities."""
