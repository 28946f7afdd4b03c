#version 330 core
// Textured, lit mesh. Vertices arrive in image space: x right, y down (pixels), z away from the camera.
uniform vec2 viewport;      // image width, height in pixels
uniform vec2 depth_range;   // z that maps to the near and far clip planes
uniform mat4 light_matrix;  // image space -> shadow-map clip space

in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;

out vec2 v_uv;
out vec3 v_normal;
out vec3 v_shadow;  // position in the shadow map, [0,1]^3

vec4 image_to_clip(vec3 p) {
    // Orthographic: x in [0,W] -> [-1,1]; y flips because the image's y grows downwards and clip y upwards.
    float z = (p.z - depth_range.x) / (depth_range.y - depth_range.x) * 2.0 - 1.0;
    return vec4(p.x / viewport.x * 2.0 - 1.0, 1.0 - p.y / viewport.y * 2.0, z, 1.0);
}

void main() {
    gl_Position = image_to_clip(in_pos);
    v_uv = in_uv;
    v_normal = in_normal;
    v_shadow = (light_matrix * vec4(in_pos, 1.0)).xyz * 0.5 + 0.5;
}
