#version 330 core
// Unlit pass: interpolates a per-vertex vec3 attribute (e.g. image-space z for a depth map).
uniform vec2 viewport;
uniform vec2 depth_range;
in vec3 in_pos;
in vec3 in_attr;
out vec3 v_attr;
void main() {
    float z = (in_pos.z - depth_range.x) / (depth_range.y - depth_range.x) * 2.0 - 1.0;
    gl_Position = vec4(in_pos.x / viewport.x * 2.0 - 1.0, 1.0 - in_pos.y / viewport.y * 2.0, z, 1.0);
    v_attr = in_attr;
}
