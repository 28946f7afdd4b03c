#version 330 core
// Full-screen quad; the image's first row lands at the top of the viewport.
in vec2 in_corner;  // clip-space corner, (-1,-1)..(1,1)
out vec2 v_uv;
void main() {
    gl_Position = vec4(in_corner, 0.0, 1.0);
    v_uv = vec2(in_corner.x * 0.5 + 0.5, 0.5 - in_corner.y * 0.5);
}
