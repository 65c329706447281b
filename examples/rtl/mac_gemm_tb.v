// A sequential MAC array model and its self-checking testbench, driven by fxsim golden vectors.
//
// Every output C[i][j] = bias[j] + sum_k A[i][k] * B[k][j] is computed by one MAC unit: an
// A_BITS x B_BITS multiplier (each operand two's complement or unsigned: A_SIGNED, B_SIGNED) feeding an ACC_BITS accumulator that wraps (SAT = 0) or saturates
// (SAT = 1) after every single addition, in k order. The testbench reads a.hex, b.hex, bias.hex
// (HAS_BIAS = 1), acc.hex and trace.hex (the accumulator after every cycle of output (TI, TJ)) with
// $readmemh from the working directory, and counts mismatches.
//
//   iverilog -g2012 -P mac_gemm_tb.M=8 -P mac_gemm_tb.K=64 ... -o sim mac_gemm_tb.v && vvp sim
`timescale 1ns/1ps

module mac_unit #(parameter A_BITS = 8, B_BITS = 8, ACC_BITS = 16, SAT = 1, A_SIGNED = 1, B_SIGNED = 1) (
    input  wire                       clk,
    input  wire                       load,      // acc <= init
    input  wire                       en,        // acc <= acc (+) a*b
    input  wire signed [ACC_BITS-1:0] init,
    input  wire        [A_BITS-1:0]   a,         // two's complement if A_SIGNED, else unsigned
    input  wire        [B_BITS-1:0]   b,
    output reg  signed [ACC_BITS-1:0] acc
);
    localparam W = 72;                                   // wide enough for any sum of these widths
    wire signed [A_BITS:0] a_ext = A_SIGNED ? {a[A_BITS-1], a} : {1'b0, a};
    wire signed [B_BITS:0] b_ext = B_SIGNED ? {b[B_BITS-1], b} : {1'b0, b};
    wire signed [W-1:0] prod = a_ext * b_ext;
    wire signed [W-1:0] sum  = acc + prod;
    wire signed [W-1:0] maxv = (72'sd1 <<< (ACC_BITS - 1)) - 1;
    wire signed [W-1:0] minv = -(72'sd1 <<< (ACC_BITS - 1));
    wire signed [ACC_BITS-1:0] next = (SAT && sum > maxv) ? maxv[ACC_BITS-1:0] :
                                      (SAT && sum < minv) ? minv[ACC_BITS-1:0] : sum[ACC_BITS-1:0];
    always @(posedge clk) begin
        if (load)    acc <= init;
        else if (en) acc <= next;
    end
endmodule

module mac_gemm_tb;
    parameter M = 4, K = 16, N = 4;
    parameter A_BITS = 8, B_BITS = 8, ACC_BITS = 16, SAT = 1, HAS_BIAS = 0, A_SIGNED = 1, B_SIGNED = 1;
    parameter TI = 0, TJ = 0, HAS_TRACE = 1;

    reg [A_BITS-1:0]   a_mem   [0:M*K-1];
    reg [B_BITS-1:0]   b_mem   [0:K*N-1];
    reg [ACC_BITS-1:0] bias_mem[0:N-1];
    reg [ACC_BITS-1:0] acc_mem [0:M*N-1];
    reg [ACC_BITS-1:0] trace_mem[0:K];

    reg clk = 0, load = 0, en = 0;
    reg [A_BITS-1:0]          a;
    reg [B_BITS-1:0]          b;
    reg signed [ACC_BITS-1:0] init;
    wire signed [ACC_BITS-1:0] acc;
    mac_unit #(.A_BITS(A_BITS), .B_BITS(B_BITS), .ACC_BITS(ACC_BITS), .SAT(SAT), .A_SIGNED(A_SIGNED),
               .B_SIGNED(B_SIGNED)) dut (
        .clk(clk), .load(load), .en(en), .init(init), .a(a), .b(b), .acc(acc));

    always #5 clk = ~clk;

    integer i, j, k, errors, trace_errors, checked;
    initial begin
        $readmemh("a.hex", a_mem);
        $readmemh("b.hex", b_mem);
        if (HAS_BIAS) $readmemh("bias.hex", bias_mem);
        $readmemh("acc.hex", acc_mem);
        if (HAS_TRACE) $readmemh("trace.hex", trace_mem);
        errors = 0; trace_errors = 0; checked = 0;
        for (i = 0; i < M; i = i + 1) begin
            for (j = 0; j < N; j = j + 1) begin
                @(negedge clk);
                init = HAS_BIAS ? bias_mem[j] : 0; load = 1; en = 0;
                @(negedge clk);
                load = 0;
                if (HAS_TRACE && i == TI && j == TJ && acc !== trace_mem[0]) trace_errors = trace_errors + 1;
                for (k = 0; k < K; k = k + 1) begin
                    a = a_mem[i*K + k]; b = b_mem[k*N + j]; en = 1;
                    @(negedge clk);
                    if (HAS_TRACE && i == TI && j == TJ && acc !== trace_mem[k+1]) begin
                        if (trace_errors < 5) $display("TRACE MISMATCH cycle %0d: rtl %h golden %h", k+1, acc, trace_mem[k+1]);
                        trace_errors = trace_errors + 1;
                    end
                end
                en = 0;
                checked = checked + 1;
                if (acc !== acc_mem[i*N + j]) begin
                    if (errors < 5) $display("MISMATCH C[%0d][%0d]: rtl %h golden %h", i, j, acc, acc_mem[i*N + j]);
                    errors = errors + 1;
                end
            end
        end
        $display("RESULT checked=%0d mismatches=%0d trace_mismatches=%0d", checked, errors, trace_errors);
        $finish;
    end
endmodule
