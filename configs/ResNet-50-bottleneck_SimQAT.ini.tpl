; One bottleneck block of MindSpore's ResNet-50 (v1.5: the stride on the 3x3 conv), as used by
; configs/ResNet-50_CIFAR10*.ini. Parameters: INPUT, NB_FILTERS, STRIDES, PROJECTION_SHORTCUT
; (a 1x1 conv + BatchNorm on the shortcut). conv_def / bn_def / sum_def come from the including
; INI (with or without SimQAT quantizers).

[{{SECTION_NAME}}_conv1] conv_def
Input={{INPUT}}
KernelDims=1 1
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_bn1] bn_def
Input={{SECTION_NAME}}_conv1
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_conv2] conv_def
Input={{SECTION_NAME}}_bn1
KernelDims=3 3
Padding=1
Stride={{STRIDES}}
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_bn2] bn_def
Input={{SECTION_NAME}}_conv2
NbOutputs={{NB_FILTERS}}

[{{SECTION_NAME}}_conv3] conv_def
Input={{SECTION_NAME}}_bn2
KernelDims=1 1
NbOutputs=$(4 * {{NB_FILTERS}})

[{{SECTION_NAME}}_bn3] bn_def
Input={{SECTION_NAME}}_conv3
NbOutputs=$(4 * {{NB_FILTERS}})
ActivationFunction=Linear

{% if PROJECTION_SHORTCUT exists %}
[{{SECTION_NAME}}_down] conv_def
Input={{INPUT}}
KernelDims=1 1
Stride={{STRIDES}}
NbOutputs=$(4 * {{NB_FILTERS}})

[{{SECTION_NAME}}_bn_down] bn_def
Input={{SECTION_NAME}}_down
NbOutputs=$(4 * {{NB_FILTERS}})
ActivationFunction=Linear

{% set INPUT %}{{SECTION_NAME}}_bn_down{% endset %}
{% endif %}

[{{SECTION_NAME}}_sum] sum_def
Input={{SECTION_NAME}}_bn3,{{INPUT}}
NbOutputs=$(4 * {{NB_FILTERS}})
