"""The policy model: loading any transformers causal LM or the embedded SmolLM2 GGUF (`policy`), a tiny
random policy for tests (`tiny`), and LoRA adapters through peft (`lora`)."""
