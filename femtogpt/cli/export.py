"""`export`: the weights as plain tensors (safetensors or NumPy .npz) for use outside femtogpt."""
import click

from femtogpt.cli.common import UserError, check_output_path, model_option, open_checkpoint


@click.command()
@model_option()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output file (.safetensors or .npz).")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "npz"]), default=None,
              help="Output format [default: from --out's extension, else safetensors].")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def export(model_path, out_path, fmt, force):
    """Write the model's weights under the reference's tensor names, with the hyperparameters, the
    tokenizer (Hugging Face JSON) and the optimizer step in the metadata. Not a transformers model:
    femtoGPT's architecture has no matching class there."""
    from femtogpt.io.model_file import ModelFileError
    from femtogpt.io.export import export as write_export

    fmt = fmt or ("npz" if out_path.lower().endswith(".npz") else "safetensors")
    check_output_path(out_path, "--out", force, inputs=[("the model file", model_path)])
    ckpt = open_checkpoint(model_path)
    try:
        count, size = write_export(ckpt, out_path, fmt)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"Exported {model_path} ({ckpt.hp.num_params():,} parameters, {count} tensors, step "
               f"{ckpt.step}) to {out_path}: {fmt}, {size:,} bytes")


COMMANDS = [export]
