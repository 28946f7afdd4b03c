#version 330 core
// Lambert shading: texture * (ambient + key colour * max(n.l, 0) * lit), lit = 0 inside the hard shadow.
uniform sampler2D albedo;
uniform sampler2D shadow_map;  // depth along the key light, as seen from the light
uniform vec3 ambient;
uniform vec3 key_color;
uniform vec3 key_dir;          // unit vector towards the light, image space
uniform bool use_shadow;

in vec2 v_uv;
in vec3 v_normal;
in vec3 v_shadow;

out vec4 frag_color;

float lit_fraction(float n_dot_l) {
    if (!use_shadow) return 1.0;
    // Slope-scaled bias: grazing surfaces change depth fast across one shadow-map texel.
    float bias = 0.002 + 0.01 * sqrt(1.0 - n_dot_l * n_dot_l) / max(n_dot_l, 0.05);
    float occluder = texture(shadow_map, v_shadow.xy).r;
    return v_shadow.z - min(bias, 0.05) > occluder ? 0.0 : 1.0;
}

void main() {
    vec3 n = normalize(v_normal);
    float n_dot_l = max(dot(n, key_dir), 0.0);
    vec3 light = ambient + key_color * n_dot_l * (n_dot_l > 0.0 ? lit_fraction(n_dot_l) : 0.0);
    frag_color = vec4(clamp(texture(albedo, v_uv).rgb * light, 0.0, 1.0), 1.0);
}
