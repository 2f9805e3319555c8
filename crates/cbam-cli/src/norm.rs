//! `--mean` / `--std`, `--channel-order` and `--resize`: how pictures become the input of a
//! model whose file does not say (what timm, torchvision and hand-written models export).

use anyhow::{ensure, Result};
use cbam_compiler::data::{ChannelOrder, InputSpec, Preprocess, Resize};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct NormArgs {
    /// Input normalisation mean, model input = (pixel/255 - mean) / std: one value or one
    /// per channel (ImageNet: --mean 0.485,0.456,0.406). Replaces the model's cbam.mean
    #[arg(
        long,
        value_name = "M[,M..]",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub mean: Option<Vec<f32>>,
    /// Input normalisation std, one value or one per channel (ImageNet: --std
    /// 0.229,0.224,0.225). Replaces the model's cbam.std
    #[arg(long, value_name = "S[,S..]", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Colour channel order of the model input: rgb (torchvision, timm) or bgr (Caffe,
    /// OpenCV). Replaces what the model records
    #[arg(long, value_name = "rgb|bgr")]
    pub channel_order: Option<ChannelOrder>,
    /// How a picture of another size becomes the input: crop (the largest centred window
    /// with the model's aspect ratio; the default), crop:F (F of that window on each side,
    /// e.g. timm's 0.875) or stretch (the whole picture). Replaces what the model records
    #[arg(long, value_name = "crop|crop:F|stretch")]
    pub resize: Option<Resize>,
}

impl NormArgs {
    /// `(mean, std)` when either flag is given (the other defaults to 0 or 1).
    pub fn given(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.mean.is_none() && self.std.is_none() {
            return None;
        }
        Some((
            self.mean.clone().unwrap_or_else(|| vec![0.0]),
            self.std.clone().unwrap_or_else(|| vec![1.0]),
        ))
    }

    /// `spec` with the flags' normalisation and preprocessing, checked against its channel
    /// count.
    pub fn apply(&self, spec: InputSpec) -> Result<InputSpec> {
        let c = spec.shape[0];
        ensure!(
            self.channel_order.is_none_or(|o| o == ChannelOrder::Rgb) || c == 3,
            "--channel-order bgr is for models of 3 input channels; this one takes {c}"
        );
        let preprocess = Preprocess {
            order: self.channel_order.unwrap_or(spec.preprocess.order),
            resize: self.resize.unwrap_or(spec.preprocess.resize),
        };
        let spec = spec.with_preprocess(preprocess);
        let Some((mean, std)) = self.given() else {
            return Ok(spec);
        };
        for (flag, v) in [("--mean", &mean), ("--std", &std)] {
            ensure!(
                v.len() == 1 || v.len() == c,
                "{flag} has {} values but the model takes {c} input channels; give one value \
                 or {c}",
                v.len()
            );
            ensure!(
                v.iter().all(|x| x.is_finite()),
                "{flag} {v:?} holds a value that is not a number"
            );
        }
        Ok(InputSpec::new(spec.shape, &mean, &std)?.with_preprocess(preprocess))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InputSpec {
        InputSpec::new([3, 2, 2], &[], &[]).unwrap()
    }

    #[test]
    fn flags_replace_the_model_normalisation() {
        let none = NormArgs::default();
        assert_eq!(none.apply(spec()).unwrap(), spec());
        let imagenet = NormArgs {
            mean: Some(vec![0.485, 0.456, 0.406]),
            std: Some(vec![0.229, 0.224, 0.225]),
            ..NormArgs::default()
        };
        let s = imagenet.apply(spec()).unwrap();
        assert_eq!(s.mean, [0.485, 0.456, 0.406]);
        assert_eq!(s.std, [0.229, 0.224, 0.225]);
        let mean_only = NormArgs {
            mean: Some(vec![0.5]),
            ..NormArgs::default()
        };
        assert_eq!(mean_only.apply(spec()).unwrap().std, [1.0; 3]);
    }

    #[test]
    fn wrong_counts_and_bad_values_are_refused() {
        let two = NormArgs {
            mean: Some(vec![0.1, 0.2]),
            ..NormArgs::default()
        };
        let err = two.apply(spec()).unwrap_err().to_string();
        assert!(err.contains("3 input channels"), "{err}");
        let zero_std = NormArgs {
            std: Some(vec![0.0]),
            ..NormArgs::default()
        };
        assert!(zero_std.apply(spec()).is_err());
        let nan = NormArgs {
            mean: Some(vec![f32::NAN]),
            ..NormArgs::default()
        };
        assert!(nan.apply(spec()).is_err());
    }

    #[test]
    fn channel_order_and_resize_replace_the_models_and_keep_the_rest() {
        let recorded = spec().with_preprocess(Preprocess {
            order: ChannelOrder::Bgr,
            resize: Resize::Stretch,
        });
        let none = NormArgs::default();
        assert_eq!(none.apply(recorded.clone()).unwrap(), recorded);
        let crop = NormArgs {
            resize: Some(Resize::Crop { fraction: 0.875 }),
            mean: Some(vec![0.5]),
            ..NormArgs::default()
        };
        let s = crop.apply(recorded).unwrap();
        assert_eq!(s.preprocess.order, ChannelOrder::Bgr);
        assert_eq!(s.preprocess.resize, Resize::Crop { fraction: 0.875 });
        assert_eq!(s.mean, [0.5; 3]);
        let gray = InputSpec::new([1, 2, 2], &[], &[]).unwrap();
        let bgr = NormArgs {
            channel_order: Some(ChannelOrder::Bgr),
            ..NormArgs::default()
        };
        let err = bgr.apply(gray).unwrap_err().to_string();
        assert!(err.contains("3 input channels"), "{err}");
    }
}
