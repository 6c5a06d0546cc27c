"""CDK code: typed config, stacks and constructs."""
